//! The escalation ladder: stop signal, grace, `SIGKILL`, for every process of a tree.
//!
//! # Theory of operation
//!
//! A [`TreeStop`] is driven by its owner's event loop, which owns the clock:
//!
//! 1. [`TreeStop::begin`] scans `/proc` for every live descendant of the root (hangwatch itself,
//!    which is a subreaper, so escapees are still below it), sends the stop signal to the
//!    program's process group and to each escaped descendant, and opens a pidfd per process.
//! 2. While the grace lasts, the owner awaits [`TreeStop::exited`] (pidfds becoming readable)
//!    and `SIGCHLD`, and calls [`TreeStop::refresh`] after each: exits are recorded, the tree is
//!    rescanned, and a process forked since the last look gets the same signal.
//! 3. At [`TreeStop::grace_deadline`] the owner calls [`TreeStop::kill_now`]: every process still
//!    alive gets `SIGKILL`. Processes forked meanwhile are found by the next refresh and killed
//!    too; a killed process cannot fork, so the loop converges.
//! 4. The stop is over when `refresh` finds no live descendant. Reaping stays with the owner
//!    ([`crate::reap`]); with nothing alive, the remaining children are zombies to reap.
//!
//! Every signal to an individual process goes through a start-time-verified pidfd, so a reused
//! PID is never hit. The group signal (`kill(-pgid)`) is sent only while the scan shows a live
//! member of the group, and a non-empty group's ID cannot be reused.

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::time::Duration;

use hangwatch_protocol::report::{ProcessInfo, SentSignal, StoppedProcess};
use nix::errno::Errno;
use nix::unistd::Pid;
use tokio::time::Instant;

use crate::exit_watch::ExitWatch;
use crate::pid::ProcessId;
use crate::pidfd::PidFd;
use crate::signal::Signal;
use crate::stat::Stat;
use crate::tree::ProcessTable;

/// How to stop a program: the first signal and how long to wait before `SIGKILL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopPlan {
    /// Sent first, to the whole tree.
    pub signal: Signal,
    /// How long the tree gets to exit before `SIGKILL`.
    pub grace: Duration,
}

impl Default for StopPlan {
    fn default() -> Self {
        StopPlan {
            signal: Signal::TERMINATE,
            grace: Duration::from_secs(10),
        }
    }
}

/// The stop of one process tree in progress. See the module documentation.
#[derive(Debug)]
pub struct TreeStop {
    root: i32,
    group: Option<i32>,
    plan: StopPlan,
    began: Instant,
    grace_until: Option<Instant>,
    members: BTreeMap<ProcessId, Member>,
    watch: ExitWatch,
}

#[derive(Debug)]
struct Member {
    info: ProcessInfo,
    escaped_group: bool,
    pidfd: Option<PidFd>,
    signals: Vec<SentSignal>,
    killed: bool,
}

impl TreeStop {
    /// Begins stopping every live descendant of `root`, `group` being the program's process
    /// group (signalled as a whole). Must be called inside a tokio runtime.
    ///
    /// The tree is scanned *before* the first signal, so that the record names every process
    /// that received it, even those that die of it at once; the scan costs well under a
    /// millisecond on a typical machine (see the `stop_latency` benchmark).
    pub fn begin(plan: StopPlan, root: i32, group: Option<i32>) -> io::Result<TreeStop> {
        let began = Instant::now();
        let mut stop = TreeStop {
            root,
            group,
            plan,
            began,
            grace_until: Some(began + plan.grace),
            members: BTreeMap::new(),
            watch: ExitWatch::new()?,
        };
        stop.sweep(plan.signal)?;
        Ok(stop)
    }

    /// When the grace runs out; `None` once `SIGKILL` has been sent.
    #[must_use]
    pub fn grace_deadline(&self) -> Option<Instant> {
        self.grace_until
    }

    /// When the stop began.
    #[must_use]
    pub fn began(&self) -> Instant {
        self.began
    }

    /// The plan this stop follows.
    #[must_use]
    pub fn plan(&self) -> StopPlan {
        self.plan
    }

    /// Whether `SIGKILL` was needed.
    #[must_use]
    pub fn escalated(&self) -> bool {
        self.grace_until.is_none()
    }

    /// Ends the grace: `SIGKILL` to every process of the tree still alive.
    pub fn kill_now(&mut self) -> io::Result<()> {
        self.grace_until = None;
        self.sweep(Signal::KILL)
    }

    /// Waits until a tracked process exits. Call [`TreeStop::refresh`] afterwards.
    pub async fn exited(&self) -> io::Result<()> {
        self.watch.exited().await.map(drop)
    }

    /// Records exits, rescans the tree and signals processes that appeared since the last look.
    /// Returns whether any process of the tree is still alive.
    pub fn refresh(&mut self) -> io::Result<bool> {
        let signal = if self.grace_until.is_some() {
            self.plan.signal
        } else {
            Signal::KILL
        };
        self.sweep(signal)?;
        Ok(self.any_alive())
    }

    /// Whether any process of the tree was alive at the last look.
    #[must_use]
    pub fn any_alive(&self) -> bool {
        self.members.values().any(|m| m.pidfd.is_some())
    }

    /// The record of every process signalled, in PID order.
    #[must_use]
    pub fn into_records(self) -> Vec<StoppedProcess> {
        self.members
            .into_values()
            .map(|m| StoppedProcess {
                process: m.info,
                escaped_group: m.escaped_group,
                signals: m.signals,
                killed: m.killed,
            })
            .collect()
    }

    /// One pass: forget exited members, find live descendants, send `signal` to those that have
    /// not had it yet.
    fn sweep(&mut self, signal: Signal) -> io::Result<()> {
        let table = ProcessTable::scan()?;
        let alive: Vec<&Stat> = table
            .descendants(self.root)
            .into_iter()
            .filter(|stat| !stat.is_zombie())
            .collect();

        // Forget exits: a member whose process is no longer alive in the scan.
        let alive_ids: HashSet<ProcessId> =
            alive.iter().map(|stat| ProcessId::from(*stat)).collect();
        for (id, member) in &mut self.members {
            if !alive_ids.contains(id)
                && let Some(pidfd) = member.pidfd.take()
            {
                self.watch.remove(&pidfd);
            }
        }

        for stat in &alive {
            let id = ProcessId::from(*stat);
            if self.members.contains_key(&id) {
                continue;
            }
            let Some(pidfd) = PidFd::open(id)? else {
                continue;
            };
            self.watch.add(&pidfd)?;
            self.members.insert(
                id,
                Member {
                    info: stat.info(),
                    escaped_group: self.group.is_some_and(|g| g != stat.pgrp),
                    pidfd: Some(pidfd),
                    signals: Vec::new(),
                    killed: false,
                },
            );
        }

        // Each live process gets each signal once: a handler must not see TERM twice because
        // a sibling exited and the tree was looked at again.
        let after_ms = self.began.elapsed().as_secs_f64() * 1000.0;
        let pending: Vec<ProcessId> = self
            .members
            .iter()
            .filter(|(_, m)| {
                m.pidfd.is_some() && m.signals.last().is_none_or(|s| s.signal != signal.name())
            })
            .map(|(id, _)| *id)
            .collect();

        // The group signal reaches members forked after the scan too, so send it when any live
        // member of the group is pending, and only then.
        let group_signalled = match self.group {
            Some(group) if pending.iter().any(|id| self.members[id].info.pgid == group) => {
                match nix::sys::signal::killpg(Pid::from_raw(group), signal.0) {
                    Ok(()) => {
                        wake_group(group, signal);
                        Some((group, after_ms))
                    }
                    Err(Errno::ESRCH) => None,
                    Err(err) => return Err(err.into()),
                }
            }
            _ => None,
        };

        for id in pending {
            let Some(member) = self.members.get_mut(&id) else {
                continue;
            };
            let Some(pidfd) = &member.pidfd else {
                continue;
            };
            let (delivered, at_ms) = match group_signalled {
                Some((group, at_ms)) if group == member.info.pgid => (true, at_ms),
                _ => {
                    let sent = pidfd.send(signal)?;
                    if sent && signal != Signal::KILL {
                        let _ = pidfd.send(Signal::CONTINUE);
                    }
                    (sent, after_ms)
                }
            };
            if delivered {
                member.signals.push(SentSignal {
                    signal: signal.name().to_owned(),
                    after_ms: at_ms,
                });
                member.killed |= signal == Signal::KILL;
            }
        }
        Ok(())
    }
}

/// A stopped process (Ctrl-Z, `SIGTTIN` from reading a terminal it does not own, `SIGSTOP`)
/// keeps every signal but `KILL` pending until it is continued, so a polite stop signal is
/// followed by `CONT`, as systemd does: a suspended program can then shut down cleanly within
/// the grace instead of always needing `KILL`.
fn wake_group(group: i32, signal: Signal) {
    if signal != Signal::KILL {
        let _ = nix::sys::signal::killpg(Pid::from_raw(group), Signal::CONTINUE.0);
    }
}
