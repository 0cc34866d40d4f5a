//! hangwatch's operating-system layer for process lifecycle.
//!
//! This crate owns everything that *changes* processes: starting a program in a process group
//! of its own ([`mod@spawn`]), as another user if asked ([`user`]), becoming a subreaper and reaping ([`reap`]), naming processes in a way
//! that a reused PID cannot fool ([`pid`], [`pidfd`]), stopping a whole tree with an escalation
//! ladder ([`stop`]), killing what is left when hangwatch itself is killed ([`guardian`]), and
//! removing a SysV segment a program left ([`ipc`]), and telling whether the kernel's OOM
//! killer killed a program ([`oom`]). Read-only inspection
//! (thread states, stacks, the leak audit) lives elsewhere.
//!
//! All `unsafe` code and every raw system call is in `sys/`, one file per platform exporting the
//! same functions; the logic above it has no `cfg`. Only Linux is supported today (pidfds,
//! `PR_SET_CHILD_SUBREAPER`, `/proc`); `sys/other.rs` marks where a port would begin.
//!
//! # Caveats
//!
//! - Reaping must happen in one place ([`reap::reap_exited`]); never combine this crate with
//!   `tokio::process` or `std::process::Child::wait` in the same process.
//! - Descendants are found in `/proc`: by following the children files down from a root
//!   ([`tree::ProcessTable::subtree`], cost per process of the tree), or by reading every
//!   process ([`tree::ProcessTable::scan`], about a millisecond per hundred processes on the
//!   machine). Either runs only when a stop begins or a tracked process exits. The supervisor's
//!   search for a previous instance's survivors and the leak audit's search for other holders
//!   of a leaked object go through the full scan too, rather than list `/proc` themselves.

#[cfg_attr(target_os = "linux", path = "sys/linux.rs")]
#[cfg_attr(not(target_os = "linux"), path = "sys/other.rs")]
mod sys;

pub mod async_fd;
pub mod disposition;
pub mod environ;
pub mod exit_watch;
pub mod guardian;
pub mod ipc;
pub mod mappings;
pub mod net_unix;
pub mod oom;
pub mod pid;
pub mod pidfd;
#[cfg(test)]
mod properties;
pub mod reap;
pub mod signal;
pub mod spawn;
pub mod stat;
pub mod stop;
pub mod timer;
pub mod tree;
pub mod user;

pub use guardian::{Guardian, GuardianStart};
pub use pid::ProcessId;
pub use reap::ExitStatus;
pub use signal::Signal;
pub use spawn::{
    OpenFilesLimit, ProgramCommand, SpawnError, SpawnOptions, Spawned, raise_open_files_limit,
    spawn,
};
pub use stop::{Scope, StopPlan, TreeStop};
pub use user::{RunAs, UserError};
