//! The guardian: what kills a SIGKILLed hangwatch's processes.
//!
//! `PR_SET_PDEATHSIG` kills the programs hangwatch started directly when it dies, but not their
//! descendants: a shell's children, a pool's workers and a `setsid` daemon are re-parented and
//! live on. When hangwatch is killed with `SIGKILL` (the OOM killer, an operator, a container
//! runtime), it can do nothing itself. The guardian does it instead.
//!
//! # Theory of operation
//!
//! [`Guardian::start`] forks a small process that holds a pidfd of hangwatch and one end of a
//! socket pair, and sleeps in `poll(2)` on both. When hangwatch ends normally it sends one byte
//! ([`Guardian::disarm`]) and the guardian exits without doing anything: a normal exit costs a
//! `send(2)`. When the pidfd becomes readable without that byte, hangwatch died abnormally: the
//! guardian reads every process's starting environment (`/proc/PID/environ`) and kills, through
//! a pidfd, each one that carries the token hangwatch gave its programs (`HANGWATCH_INSTANCE` in
//! `up`, `HANGWATCH_RUN` in `run`), with that process's group (whose other members may have
//! cleared the token), again until a pass finds nothing. Then it exits. It never outlives its
//! work: it exits as soon as hangwatch does, either way.
//!
//! The guardian is a thread-free forked helper, not hangwatch's binary re-executed: the
//! engine also runs inside test binaries and other hosts that have no hidden mode to re-enter,
//! and a fork needs no path to the binary (which may have been replaced by an upgrade). The
//! price is the rule of `fork` in a threaded process: between the fork and the guardian's
//! exit, only raw, async-signal-safe system calls, with every buffer on the stack (see the
//! `sys` module).
//!
//! It is *not* hangwatch's child. It is forked through an intermediate child that calls
//! `setsid(2)`, sets up the signals and descriptors the guardian inherits, forks it and exits
//! at once. hangwatch reaps the intermediate later ([`GuardianStart::settle`]), just before it
//! becomes a subreaper and spawns its program. The fork pins the calling thread to its CPU
//! for that moment, so that the intermediate runs there at once instead of queueing behind a
//! busy task on another CPU while hangwatch sleeps: on a busy machine that wait was the
//! guardian's whole cost (see `docs/PITFALLS.md`). The guardian is re-parented to init or to
//! the subreaper above hangwatch:
//! hangwatch's reaping never sees it, its "no child left" check and its final sweep are not
//! held up by it, and no stop of hangwatch's tree signals it. In its own session and process
//! group, it does not receive a signal sent to hangwatch's group (Ctrl-C) or a terminal's
//! hang-up, and it ignores `INT`, `TERM`, `HUP` and `QUIT` besides: only `KILL` ends it early.
//!
//! # Why not a kernel mechanism
//!
//! - A PID namespace kills everything in it when its init dies, but creating one needs
//!   `CAP_SYS_ADMIN` or a user namespace (often disabled), and hangwatch would then see its
//!   programs under other PIDs than the rest of the machine does.
//! - cgroup v2's `cgroup.kill` is exact and immediate, but needs a writable, delegated cgroup,
//!   which a plain user, a cgroup v1 machine or most containers do not have; and someone must
//!   still write to it after hangwatch is gone, which is the guardian's job anyway.
//!
//! When hangwatch is PID 1 (a container's entrypoint) no guardian is needed: the kernel kills
//! every process of the namespace when its init dies. [`Guardian::start`] then returns `None`.
//!
//! # Caveats
//!
//! - A descendant that cleared the token from its environment, left its group (`setsid`) and
//!   whose group has no token carrier left is not found: nothing then ties it to hangwatch.
//! - The guardian can read the environment of processes of its own user only, unless hangwatch
//!   runs as root (as it must to run programs as other users).
//! - `SIGKILL` of the guardian itself disarms it; the next `hangwatch up` on the same state
//!   directory still kills the survivors of the previous instance (the last line of defence).

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use crate::sys;

/// A guardian being forked: the intermediate child may still be running.
/// [`GuardianStart::settle`] waits for it, which must happen before this process becomes a
/// subreaper; in between, the caller goes on with its own start (the intermediate's fork and
/// its scheduling are then off the caller's path).
#[derive(Debug)]
#[must_use = "settle it before becoming a subreaper"]
pub struct GuardianStart {
    channel: OwnedFd,
    intermediate: i32,
}

impl GuardianStart {
    /// Reaps the intermediate child: the guardian is running once this returns `Ok`.
    pub fn settle(self) -> io::Result<Guardian> {
        sys::guardian_settle(self.intermediate)?;
        tracing::debug!(forked_via = self.intermediate, "guardian started");
        Ok(Guardian {
            channel: self.channel,
            forked_via: self.intermediate,
        })
    }
}

/// A running guardian. Dropping it without [`Guardian::disarm`] leaves it armed: it still acts
/// if this process then dies without disarming.
#[derive(Debug)]
pub struct Guardian {
    channel: OwnedFd,
    /// The intermediate child's PID, for the logs (the guardian's own PID is not learned, to
    /// keep the start free of a round trip).
    forked_via: i32,
}

impl Guardian {
    /// Starts a guardian for this process that, if the process dies without
    /// [`Guardian::disarm`], kills every process whose environment holds the entry `token_entry`
    /// (`NAME=value`, at most 256 bytes) and those processes' groups.
    ///
    /// Must be called before the entry is given to any program, and settled
    /// ([`GuardianStart::settle`]) before [`crate::reap::become_subreaper`] (else the guardian
    /// would be re-parented to this process). `Ok(None)` when this process is PID 1 (see the
    /// module doc).
    pub fn start(token_entry: &[u8]) -> io::Result<Option<GuardianStart>> {
        if std::process::id() == 1 {
            return Ok(None);
        }
        if token_entry.is_empty()
            || token_entry.len() > sys::GUARDIAN_NEEDLE_MAX
            || token_entry.contains(&0)
            || !token_entry.contains(&b'=')
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a guardian's token must be one NAME=value entry of at most 256 bytes",
            ));
        }
        let mut needle = [0u8; sys::GUARDIAN_NEEDLE_MAX];
        needle[..token_entry.len()].copy_from_slice(token_entry);
        let watched = sys::pidfd_open(std::process::id() as i32)?;
        let (ours, theirs) = nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::SeqPacket,
            None,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        )?;
        let null = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")?;
        let intermediate = sys::spawn_guardian(sys::GuardianSetup {
            watched,
            channel: theirs,
            null: null.into(),
            needle,
            needle_len: token_entry.len(),
            spared_group: nix::unistd::getpgrp().as_raw(),
        })?;
        Ok(Some(GuardianStart {
            channel: ours,
            intermediate,
        }))
    }

    /// The PID of the intermediate child the guardian was forked through (gone already).
    #[must_use]
    pub fn forked_via(&self) -> i32 {
        self.forked_via
    }

    /// Tells the guardian that this process is ending normally: it kills nothing and exits
    /// (at once, or once this process is gone when `handed` is not empty). Call it once
    /// everything this process started is gone.
    ///
    /// `handed`: descriptors whose last close is slow (an inotify instance's waits for an RCU
    /// grace period, 10 to 20 ms). The guardian holds copies until this process has exited,
    /// so the last close, and its wait, are the guardian's; this process's own closes are then
    /// quick. At most 8.
    pub fn disarm(self, handed: &[std::os::fd::BorrowedFd<'_>]) {
        if let Err(err) = sys::guardian_disarm(self.channel.as_fd(), handed) {
            // Gone already (killed by someone): nothing to disarm.
            tracing::debug!(%err, "guardian not disarmed");
        }
    }
}
