//! Every `unsafe` call of the fixture: fork, signal dispositions, `_exit`, SysV shared memory.
//!
//! The workspace denies `unsafe_code`; it is lifted here only, because a
//! program that misbehaves on purpose needs raw process and signal control.
#![expect(
    unsafe_code,
    reason = "fork(2), sigaction(2), raise(3), _exit(2), shmget(2) and shmat(2) have no safe \
              wrappers"
)]

use std::io;

use libc::c_int;
use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::unistd::{self, ForkResult, Pid};

use crate::common::Error;

/// Which side of a `fork(2)` the caller is on.
pub(crate) enum Forked {
    /// The new process.
    Child,
    /// The original process, with the PID of the new one.
    Parent(Pid),
}

/// Forks this process.
pub(crate) fn fork() -> Result<Forked, Error> {
    // SAFETY: the fixture never starts a second thread (see the crate docs),
    // so no lock can be held by a thread that does not exist in the child, and
    // the child may go on running ordinary Rust code.
    match unsafe { unistd::fork() } {
        Ok(ForkResult::Child) => Ok(Forked::Child),
        Ok(ForkResult::Parent { child }) => Ok(Forked::Parent(child)),
        Err(errno) => Err(Error::io("fork", errno)),
    }
}

/// Ends this process at once with `code`, without running exit handlers or
/// flushing stdio buffers, which belong to the process that forked it.
pub(crate) fn exit_immediately(code: c_int) -> ! {
    // SAFETY: _exit(2) takes no pointers and is always sound to call.
    unsafe { libc::_exit(code) }
}

/// Sets `sig` to be ignored (`SIG_IGN`).
pub(crate) fn ignore(sig: Signal) -> Result<(), Error> {
    // SAFETY: SIG_IGN installs no handler, so no Rust code runs in signal
    // context.
    unsafe { signal::signal(sig, SigHandler::SigIgn) }
        .map(drop)
        .map_err(|errno| Error::io("ignore signal", errno))
}

/// Installs `handler` for `sig`, without `SA_RESTART`, with an empty mask.
///
/// `handler` must be async-signal-safe: it may only touch atomics.
pub(crate) fn install_handler(sig: Signal, handler: extern "C" fn(c_int)) -> Result<(), Error> {
    let action = SigAction::new(
        SigHandler::Handler(handler),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the only handlers passed here store into atomics, which is
    // async-signal-safe; the previous action is not needed.
    unsafe { signal::sigaction(sig, &action) }
        .map(drop)
        .map_err(|errno| Error::io("install signal handler", errno))
}

/// Resets `signo` to its default disposition, unblocks it and raises it.
///
/// This returns only if the default action of `signo` does not end the
/// process (SIGCHLD, say) or after a stopping signal was continued. A plain
/// number is taken rather than [`Signal`] so that real-time signals work too.
pub(crate) fn raise_with_default_action(signo: c_int) -> Result<(), Error> {
    // KILL and STOP cannot be caught or ignored, so there is nothing to reset
    // (and signal(2) refuses them with EINVAL).
    let resettable = signo != libc::SIGKILL && signo != libc::SIGSTOP;
    // SAFETY: SIG_DFL installs no handler; an invalid number makes signal(2)
    // fail with EINVAL, reported below.
    if resettable && unsafe { libc::signal(signo, libc::SIG_DFL) } == libc::SIG_ERR {
        return Err(Error::io(
            "reset signal disposition",
            io::Error::last_os_error(),
        ));
    }
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set it is given, sigaddset and
    // sigprocmask only read it afterwards, and `signo` was accepted by
    // signal(2) above. A null old set is allowed by sigprocmask(2).
    let unblocked = unsafe {
        libc::sigemptyset(set.as_mut_ptr()) == 0
            && libc::sigaddset(set.as_mut_ptr(), signo) == 0
            && libc::sigprocmask(libc::SIG_UNBLOCK, set.as_ptr(), std::ptr::null_mut()) == 0
    };
    if !unblocked {
        return Err(Error::io("unblock signal", io::Error::last_os_error()));
    }
    // SAFETY: raise(3) takes no pointers; the disposition is the default, so
    // no handler runs.
    if unsafe { libc::raise(signo) } != 0 {
        return Err(Error::io("raise signal", io::Error::last_os_error()));
    }
    Ok(())
}

/// A glibc `pthread_mutex_t`, the lock C and C++ programs use. Rust's own
/// `Mutex` waits on a bare futex that records no owner; this one keeps its
/// owner's TID where a diagnosis can read it.
pub(crate) struct PthreadMutex(std::cell::UnsafeCell<libc::pthread_mutex_t>);

// SAFETY: a pthread mutex is made to be shared between threads; it is only
// ever used through `pthread_mutex_lock`, which synchronises itself.
unsafe impl Sync for PthreadMutex {}

impl PthreadMutex {
    /// A default (non-recursive, non-PI) mutex, unlocked.
    pub(crate) const fn new() -> Self {
        Self(std::cell::UnsafeCell::new(libc::PTHREAD_MUTEX_INITIALIZER))
    }

    /// Locks the mutex and never unlocks it: the fixture deadlocks on purpose.
    pub(crate) fn lock_forever(&self) {
        // SAFETY: the mutex is statically initialised, lives for the whole
        // program (callers use statics) and is never moved or destroyed.
        unsafe { libc::pthread_mutex_lock(self.0.get()) };
    }
}

/// Creates a private SysV shared memory segment of `size` bytes, readable and writable by this
/// user only, and returns its ID.
pub(crate) fn sysv_shm_create(size: usize) -> Result<i32, Error> {
    // SAFETY: shmget takes plain integers and touches no memory of ours.
    let id = unsafe { libc::shmget(libc::IPC_PRIVATE, size, libc::IPC_CREAT | 0o600) };
    if id < 0 {
        return Err(Error::io(
            "create a SysV segment",
            io::Error::last_os_error(),
        ));
    }
    Ok(id)
}

/// Attaches segment `id` and writes its first byte, so that it shows in `/proc/self/maps`. It
/// stays attached until the process exits.
pub(crate) fn sysv_shm_attach(id: i32) -> Result<(), Error> {
    // SAFETY: a null address lets the kernel pick where to map; the result is checked below.
    let address = unsafe { libc::shmat(id, std::ptr::null(), 0) };
    if address as isize == -1 {
        return Err(Error::io(
            "attach a SysV segment",
            io::Error::last_os_error(),
        ));
    }
    // SAFETY: the kernel just mapped at least one byte (a segment is never empty) at
    // `address`, readable and writable, and nothing else refers to it.
    unsafe { address.cast::<u8>().write_volatile(1) };
    Ok(())
}
