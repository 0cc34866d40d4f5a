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
//!    alive gets `SIGKILL`, cleanup helpers last (below). Processes forked meanwhile are found by
//!    the next refresh and killed too; a killed process cannot fork, so the loop converges.
//! 4. The stop is over when `refresh` finds no live descendant. Reaping stays with the owner
//!    ([`crate::reap`]); with nothing alive, the remaining children are zombies to reap.
//!
//! Every signal to an individual process goes through a start-time-verified pidfd, so a reused
//! PID is never hit. The group signal (`kill(-pgid)`) is sent only while the scan shows a live
//! member of the group, and a non-empty group's ID cannot be reused.
//!
//! # Cleanup helpers go last
//!
//! Some programs start a helper whose whole job is to clean up after them when they die:
//! Python's `multiprocessing` resource tracker (and loky's, and joblib's copy of loky's) ignores
//! `SIGINT` and `SIGTERM`, waits for end-of-file on a pipe that every process of the program
//! holds, and then unlinks the POSIX semaphores and shared memory the program left. Killing it
//! together with the program is what turns its harmless warning into a real leak
//! ([loky#369](https://github.com/joblib/loky/issues/369)). So a process is *spared* when its
//! command line is such a helper's ([`is_cleanup_helper`]), or when it is already exiting (its
//! command line reads empty: its memory is gone, only its exit remains):
//!
//! - it gets no stop signal: while it lives in the program's process group, every other
//!   process of the group is signalled through its own pidfd instead of `kill(-pgid)`;
//! - at the `KILL` step, the other processes are killed first, and the spared ones get a settle
//!   of [`StopPlan::helper_settle`] (`min(grace, 1 s)`) to finish their cleanup and exit;
//! - when every other process of the tree is gone (exited during the grace, or the program
//!   exited by itself), the spared ones get the same settle from that moment;
//! - a spared process still alive after its settle gets `KILL`, and so does every process when
//!   the owner calls [`TreeStop::kill_now`] once more (a user insisting).
//!
//! A stop therefore takes at most `grace + min(grace, 1 s)`. A spared process that exits within
//! its settle without having been signalled is no part of the stop's record: it was not stopped.

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::time::Duration;

use hangwatch_protocol::report::{ProcessInfo, SentSignal, StoppedProcess};
use nix::errno::Errno;
use nix::unistd::Pid;
use tokio::time::Instant;

use std::sync::Arc;

use crate::exit_watch::ExitWatch;
use crate::pid::ProcessId;
use crate::pidfd::PidFd;
use crate::signal::Signal;
use crate::stat::Stat;
use crate::tree::ProcessTable;

/// The longest settle a cleanup helper gets after the rest of its tree is gone.
const HELPER_SETTLE_MAX: Duration = Duration::from_secs(1);

/// How to stop a program: the first signal and how long to wait before `SIGKILL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopPlan {
    /// Sent first, to the whole tree.
    pub signal: Signal,
    /// How long the tree gets to exit before `SIGKILL`.
    pub grace: Duration,
}

impl StopPlan {
    /// How long a cleanup helper may run on once the rest of its tree is gone: `min(grace, 1 s)`.
    /// Helpers finish in milliseconds once their program is gone; the bound keeps a hung one
    /// from stretching the stop by more than the grace itself.
    #[must_use]
    pub fn helper_settle(&self) -> Duration {
        self.grace.min(HELPER_SETTLE_MAX)
    }
}

impl Default for StopPlan {
    fn default() -> Self {
        StopPlan {
            signal: Signal::TERMINATE,
            grace: Duration::from_secs(10),
        }
    }
}

/// Whether a command line is that of a helper that cleans up after its program once the
/// program is gone (see the module documentation): Python's `multiprocessing` resource tracker
/// (`semaphore_tracker` before Python 3.8), loky's and joblib's copy of loky's.
#[must_use]
pub fn is_cleanup_helper(command: &str) -> bool {
    // Each is started as `python -c 'from PACKAGE.resource_tracker import main; main(FD...)'`.
    const MARKERS: [&str; 2] = [
        "resource_tracker import main",
        "semaphore_tracker import main",
    ];
    MARKERS.iter().any(|marker| command.contains(marker))
}

/// Where the stop is on its ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// The stop signal went out; `KILL` comes at the end of the grace.
    Grace,
    /// Every process but the spared ones got `KILL`; they get `KILL` at the end of their settle.
    Settle(Instant),
    /// Every process got `KILL`.
    Killed,
}

/// Which processes a [`TreeStop`] covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every descendant of `root`: hangwatch itself under `hangwatch run`, where everything
    /// below the subreaper belongs to the one program. `group` is the program's process group.
    Descendants {
        /// The subreaper (or any ancestor).
        root: i32,
        /// The program's process group, signalled as a whole while it has members.
        group: Option<i32>,
    },
    /// One service of a supervisor that runs many: among the children of `adopter` (the
    /// subreaper, which adopts every escapee), those in the service's process `group` or whose
    /// environment holds the entry `marker` (`NAME=VALUE`, exact), with all their descendants.
    /// A process that escaped with `setsid` and a double fork has left the group and been
    /// adopted, but it inherited the environment; other services' processes have neither.
    Service {
        /// The subreaper.
        adopter: i32,
        /// The service's process group (its program's PID).
        group: i32,
        /// An environment entry set for this service only.
        marker: Vec<u8>,
    },
}

impl Scope {
    /// The PIDs of `table` in this scope (zombies included).
    #[must_use]
    pub fn pids(&self, table: &ProcessTable) -> Vec<i32> {
        self.members(table).into_iter().map(|s| s.pid).collect()
    }

    /// The processes of `table` in this scope.
    fn members<'t>(&self, table: &'t ProcessTable) -> Vec<&'t Stat> {
        match self {
            Scope::Descendants { root, .. } => table.descendants(*root),
            Scope::Service {
                adopter,
                group,
                marker,
            } => {
                let mut out = Vec::new();
                for child in table.children(*adopter) {
                    if child.pgrp == *group || table.has_env_entry(child.pid, marker) {
                        out.push(child);
                        out.extend(table.descendants(child.pid));
                    }
                }
                out
            }
        }
    }
}

/// The stop of one process tree in progress. See the module documentation.
#[derive(Debug)]
pub struct TreeStop {
    scope: Scope,
    group: Option<i32>,
    plan: StopPlan,
    began: Instant,
    grace_until: Instant,
    /// During the grace: when the spared processes get `KILL`, once nothing else is alive.
    spared_until: Option<Instant>,
    step: Step,
    members: BTreeMap<ProcessId, Member>,
    watch: Arc<ExitWatch>,
}

#[derive(Debug)]
struct Member {
    info: ProcessInfo,
    escaped_group: bool,
    /// A cleanup helper, or a process already exiting: killed last.
    spared: bool,
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
        let table = ProcessTable::scan()?;
        let scope = Scope::Descendants { root, group };
        TreeStop::begin_in(plan, scope, &table, Arc::new(ExitWatch::new()?))
    }

    /// Begins a stop from a scan the caller took, adding the tree's pidfds to `watch`. A
    /// supervisor stopping many services at once shares one scan per wake-up and one watch
    /// between all its stops: await the watch, then [`TreeStop::refresh_in`] each stop with
    /// one new scan.
    pub fn begin_in(
        plan: StopPlan,
        scope: Scope,
        table: &ProcessTable,
        watch: Arc<ExitWatch>,
    ) -> io::Result<TreeStop> {
        let began = Instant::now();
        let group = match &scope {
            Scope::Descendants { group, .. } => *group,
            Scope::Service { group, .. } => Some(*group),
        };
        let mut stop = TreeStop {
            scope,
            group,
            plan,
            began,
            grace_until: began + plan.grace,
            spared_until: None,
            step: Step::Grace,
            members: BTreeMap::new(),
            watch,
        };
        stop.sweep(table)?;
        Ok(stop)
    }

    /// When the stop escalates next (call [`TreeStop::kill_now`] then): the end of the grace, or
    /// of the spared processes' settle; `None` once every process has had `SIGKILL`.
    #[must_use]
    pub fn grace_deadline(&self) -> Option<Instant> {
        match self.step {
            Step::Grace => Some(match self.spared_until {
                Some(spared) => spared.min(self.grace_until),
                None => self.grace_until,
            }),
            Step::Settle(until) => Some(until),
            Step::Killed => None,
        }
    }

    /// Moves the end of the grace to `until` when that is later: the program asked for more
    /// time to stop (`EXTEND_TIMEOUT_USEC=`, as systemd extends its stop timeout). Nothing once
    /// `KILL` was sent.
    pub fn extend_grace(&mut self, until: Instant) {
        if self.step == Step::Grace {
            self.grace_until = self.grace_until.max(until);
        }
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
        self.step != Step::Grace
    }

    /// Escalates one step: `SIGKILL` to every process still alive except the spared ones, which
    /// get their settle; or, when nothing else is alive or the settle is under way already,
    /// `SIGKILL` to every process left.
    pub fn kill_now(&mut self) -> io::Result<()> {
        let table = ProcessTable::scan()?;
        self.kill_now_in(&table)
    }

    /// [`TreeStop::kill_now`] with a scan the caller took.
    pub fn kill_now_in(&mut self, table: &ProcessTable) -> io::Result<()> {
        let others_alive = self
            .members
            .values()
            .any(|m| m.pidfd.is_some() && !m.spared);
        let spared_alive = self.members.values().any(|m| m.pidfd.is_some() && m.spared);
        self.step = match self.step {
            Step::Grace if others_alive && spared_alive => {
                Step::Settle(Instant::now() + self.plan.helper_settle())
            }
            _ => Step::Killed,
        };
        self.sweep(table)
    }

    /// Waits until a tracked process exits. Call [`TreeStop::refresh`] afterwards.
    pub async fn exited(&self) -> io::Result<()> {
        self.watch.exited().await.map(drop)
    }

    /// Records exits, rescans the tree and signals processes that appeared since the last look.
    /// Returns whether any process of the tree is still alive.
    pub fn refresh(&mut self) -> io::Result<bool> {
        let table = ProcessTable::scan()?;
        self.refresh_in(&table)
    }

    /// [`TreeStop::refresh`] with a scan the caller took.
    pub fn refresh_in(&mut self, table: &ProcessTable) -> io::Result<bool> {
        self.sweep(table)?;
        Ok(self.any_alive())
    }

    /// Whether any process has been signalled (a stop of nothing but cleanup helpers that
    /// exited by themselves signals none).
    #[must_use]
    pub fn signalled_any(&self) -> bool {
        self.members.values().any(|m| !m.signals.is_empty())
    }

    /// Whether any process of the tree was alive at the last look.
    #[must_use]
    pub fn any_alive(&self) -> bool {
        self.members.values().any(|m| m.pidfd.is_some())
    }

    /// The processes that had the stop signal and were alive at the last look: those that
    /// outlived it so far, in PID order (the ones a `KILL` at the end of the grace is for).
    #[must_use]
    pub fn survivors(&self) -> Vec<ProcessInfo> {
        self.members
            .values()
            .filter(|m| m.pidfd.is_some() && !m.spared && !m.signals.is_empty())
            .map(|m| m.info.clone())
            .collect()
    }

    /// The record of every process signalled, in PID order. A spared process that exited by
    /// itself, never signalled, is not in it.
    #[must_use]
    pub fn into_records(self) -> Vec<StoppedProcess> {
        self.members
            .into_values()
            .filter(|m| !(m.spared && m.signals.is_empty()))
            .map(|m| StoppedProcess {
                process: m.info,
                escaped_group: m.escaped_group,
                signals: m.signals,
                killed: m.killed,
                survived: None,
            })
            .collect()
    }

    /// The signal a member gets at this step, if any.
    fn signal_for(&self, spared: bool) -> Option<Signal> {
        match (self.step, spared) {
            (Step::Grace, false) => Some(self.plan.signal),
            (Step::Grace | Step::Settle(_), true) => None,
            (Step::Settle(_), false) | (Step::Killed, _) => Some(Signal::KILL),
        }
    }

    /// One pass: forget exited members, find live descendants, send each the signal of the
    /// current step if it has not had it yet.
    fn sweep(&mut self, table: &ProcessTable) -> io::Result<()> {
        let alive: Vec<&Stat> = self
            .scope
            .members(table)
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
            let info = stat.info();
            // An empty command line (shown as `[comm]`) on a live process means its memory is
            // already gone: it is exiting.
            let exiting = info.command == format!("[{}]", stat.comm);
            self.members.insert(
                id,
                Member {
                    spared: exiting || is_cleanup_helper(&info.command),
                    info,
                    escaped_group: self.group.is_some_and(|g| g != stat.pgrp),
                    pidfd: Some(pidfd),
                    signals: Vec::new(),
                    killed: false,
                },
            );
        }

        // Once nothing but spared processes is left during the grace, their settle begins.
        if self.step == Step::Grace && self.spared_until.is_none() {
            let others_alive = self
                .members
                .values()
                .any(|m| m.pidfd.is_some() && !m.spared);
            if !others_alive && self.any_alive() {
                self.spared_until = Some(Instant::now() + self.plan.helper_settle());
            }
        }

        // Each live process gets each signal once: a handler must not see TERM twice because
        // a sibling exited and the tree was looked at again.
        let after_ms = self.began.elapsed().as_secs_f64() * 1000.0;
        let pending: Vec<(ProcessId, Signal)> = self
            .members
            .iter()
            .filter(|(_, m)| m.pidfd.is_some())
            .filter_map(|(id, m)| {
                let signal = self.signal_for(m.spared)?;
                m.signals
                    .last()
                    .is_none_or(|s| s.signal != signal.name())
                    .then_some((*id, signal))
            })
            .collect();

        // The group signal reaches members forked after the scan too, so send it when a live
        // member of the group is pending, and only then; it is the same signal for every
        // pending member. While a spared process lives in the group, it must not get the
        // group's signal (a `--stop-signal` other than INT or TERM, or the others' KILL, would
        // kill a helper too soon), so each process is signalled through its own pidfd instead.
        let spared_in_group = |group: i32| {
            self.members
                .values()
                .any(|m| m.spared && m.pidfd.is_some() && m.info.pgid == group)
        };
        let group_signalled = match self.group {
            Some(group) if self.step == Step::Killed || !spared_in_group(group) => match pending
                .iter()
                .find(|(id, _)| self.members[id].info.pgid == group)
            {
                Some((_, signal)) => {
                    match nix::sys::signal::killpg(Pid::from_raw(group), signal.0) {
                        Ok(()) => {
                            wake_group(group, *signal);
                            Some((group, *signal, after_ms))
                        }
                        Err(Errno::ESRCH) => None,
                        Err(err) => return Err(err.into()),
                    }
                }
                None => None,
            },
            _ => None,
        };

        for (id, signal) in pending {
            let Some(member) = self.members.get_mut(&id) else {
                continue;
            };
            let Some(pidfd) = &member.pidfd else {
                continue;
            };
            let (delivered, at_ms) = match group_signalled {
                Some((group, sent, at_ms)) if group == member.info.pgid && sent == signal => {
                    (true, at_ms)
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_and_loky_trackers_are_cleanup_helpers() {
        for command in [
            "/usr/bin/python3 -B -c from multiprocessing.resource_tracker import main;main(7)",
            "python3 -c from multiprocessing.semaphore_tracker import main;main(5)",
            "python -c from loky.backend.resource_tracker import main; main(5, 0)",
            "python -c from joblib.externals.loky.backend.resource_tracker import main; main(9, 0)",
        ] {
            assert!(is_cleanup_helper(command), "{command}");
        }
        for command in [
            "python3 -B -c from multiprocessing.spawn import spawn_main; spawn_main(tracker_fd=8)",
            "python3 job.py",
            "resource_tracker",
        ] {
            assert!(!is_cleanup_helper(command), "{command}");
        }
    }

    #[test]
    fn helper_settle_is_at_most_the_grace_and_one_second() {
        let plan = |grace| StopPlan {
            signal: Signal::TERMINATE,
            grace,
        };
        assert_eq!(
            plan(Duration::from_secs(10)).helper_settle(),
            Duration::from_secs(1)
        );
        assert_eq!(
            plan(Duration::from_millis(200)).helper_settle(),
            Duration::from_millis(200)
        );
        assert_eq!(plan(Duration::ZERO).helper_settle(), Duration::ZERO);
    }
}
