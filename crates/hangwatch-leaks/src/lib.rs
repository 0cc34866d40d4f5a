//! The leak audit: what a program left behind besides processes, attributed safely, reported,
//! and cleaned on request (`hangwatch run --leaks report|clean|fail`).
//!
//! This crate owns the system objects a dead program can leave: POSIX named semaphores and
//! shared memory (the files of `/dev/shm`: `sem.*`, Python's `psm_*`, `mp-*`, loky's, ...), SysV
//! IPC (`/proc/sysvipc/{shm,sem,msg}`), the Unix socket and lock files its tree held, and the
//! entries it left at the top level of the temporary directories (`TMPDIR`, `/tmp`,
//! `/var/tmp`: `multiprocessing`'s `pymp-*`, `mkdtemp` directories, joblib's folders; see
//! [`mod@temp`], whose rules of attribution are its own).
//! Processes left alive are the stop ladder's business (`hangwatch-process`); they only count
//! here, towards [`LeakReport::leaked`].
//!
//! # Theory of operation
//!
//! A [`LeakWatch`] follows one run in four steps; the daemon (`hangwatch up`) follows all its
//! services with one, rooted at itself, and audits each service's part of the tree when it ends
//! (step 4):
//!
//! 1. **Before**: [`LeakWatch::start`] starts an inotify watch on `/dev/shm` and the top level
//!    of each temporary directory, then takes the [`Baseline`]: every `/dev/shm` entry (by
//!    name *and* inode), every SysV object, every temporary entry. Nothing in it is ever
//!    attributed to the program or touched.
//! 2. **During**: each creation in `/dev/shm` (or of the program's user in a temporary
//!    directory) wakes a task that looks at every live process of
//!    the tree (descendants of the root: hangwatch, a subreaper) and records who maps
//!    (`/proc/PID/maps`) or holds open (`/proc/PID/fd`) which inode, and which new temporary
//!    entry it uses ([`evidence`]). Looks are spaced so that they take at most a tenth of the
//!    time; no step polls. The evidence is pruned as it grows ([`Evidence::prune`]): what a
//!    daemon keeps is the size of what is alive and present, not of everything it ever saw.
//! 3. **At a stop**: the owner calls [`LeakWatch::observe`] before the first signal (and before
//!    stopping leftovers): the last look at the tree alive. It also records SysV segments
//!    attached, sockets served and files locked. Every PID seen, the program's own
//!    ([`LeakWatch::note_started`]) and every PID the owner reaps ([`LeakWatch::note_reaped`])
//!    join the set of PIDs the tree ever had.
//! 4. **After** the tree is gone, [`LeakWatch::finish`] audits and, under
//!    [`LeakPolicy::Clean`], removes what is attributable ([`mod@audit`]). A part of the tree
//!    that is gone while the rest runs on (one service's program and its descendants) can be
//!    audited on its own, report only, for the objects linked to it alone
//!    ([`LeakWatch::audit_part`], [`mod@part`]); the final audit leaves out what such an audit
//!    reported.
//!
//! # Attribution: when in doubt, report, never delete
//!
//! Only objects that did not exist before the run and belong to the program's user (its
//! effective UID, which it inherits from hangwatch) are considered. Of those:
//!
//! - **Attributable** (listed, counted as a leak, removed by `clean`):
//!   - a `/dev/shm` entry that a process of the tree was seen holding (mapped or open) while
//!     alive, that the tree was not *missing* from at its creation (if the look right after its
//!     creation found no process of the tree holding it, someone else made it), and that no
//!     process on the machine holds now;
//!   - a SysV shared memory segment whose creator PID (`cpid`) belongs to the tree (and was not
//!     reaped before the segment was made: a reused PID) and that nobody has attached now.
//! - **Suspected** (listed, report only, not counted): linked to the tree, but not surely its
//!   leak: a `/dev/shm` entry held by the tree only after someone else created it, or still
//!   held by a process outside the tree; a SysV segment the tree attached but did not create,
//!   or that is still attached; every new SysV semaphore set and message queue of the user
//!   (the kernel records no creator for them; a queue is listed when its last sender or
//!   receiver was of the tree, or nobody used it); a Unix socket file the tree listened on, or
//!   a file it held a lock on, made during the run, that nobody serves or locks now (lock files
//!   are often meant to stay).
//! - **Unattributed** (counted only): new objects of the user that nothing links to the
//!   program, most likely another program's. A `/dev/shm` entry that the program created and
//!   released before hangwatch could look (within milliseconds) lands here too: that is the
//!   price of never deleting on a guess.
//!
//! Removal re-checks identity first: a `/dev/shm` name is unlinked only if it still names the
//! same inode; a SysV segment is removed by ID with `IPC_RMID`.
//!
//! # Caveats
//!
//! - Linux only (`/proc`, inotify).
//! - A program that changes user (setuid) leaves objects of another owner, which are not
//!   considered.
//! - "No process holds it now" is checked among the processes hangwatch may inspect: all of
//!   them as root; as another user, its own (other users' processes cannot open a `0600`
//!   object, which is how Python and most programs create them). A non-dumpable process, or
//!   PID 1 of some containers, cannot be inspected even by root, and is taken to hold nothing.
//! - On Linux 6.11 and later only shared mappings are asked for (`PROCMAP_QUERY`): a `/dev/shm`
//!   object mapped privately (copy-on-write, of no use for sharing) counts as held only through
//!   an open descriptor.
//! - Objects of a process that moved into another mount namespace are seen through its view
//!   of `/dev/shm`; socket and lock paths are as the holder named them.
#![forbid(unsafe_code)]

pub mod audit;
pub mod evidence;
pub mod part;
pub mod procfs;
#[cfg(test)]
mod properties;
mod reported;
pub mod shm;
pub mod temp;
mod watch;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use audit::{Baseline, audit};
pub use evidence::{Evidence, Moment};
use hangwatch_protocol::exit_code;
pub use hangwatch_protocol::report::{LeakPolicy, LeakReport};
pub use part::{Part, PartAudit, PartFound};

use crate::shm::{SHM_DIR, ShmDir};
use crate::temp::{TempBaseline, TempEntry};
use crate::watch::{Drained, ShmWatch};

/// How many looks may run back to back: after each, the watcher waits this many times the
/// look's own cost, so looks take at most a tenth of hangwatch's time however fast a program
/// creates objects (the kernel queues the events meanwhile).
const LOOK_SPACING: u32 = 9;

/// The most errors kept from the watcher's looks (one failing look tends to repeat).
const ERRORS_KEPT: usize = 8;

/// Follows one run's tree for leaks. See the crate documentation.
#[derive(Debug)]
pub struct LeakWatch {
    shared: Arc<Mutex<Shared>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    baseline: Arc<Baseline>,
    /// The temporary directories before the run.
    temp_baseline: Arc<TempBaseline>,
    /// The temporary directory of each inotify watch.
    temp_watches: HashMap<i32, PathBuf>,
    evidence: Evidence,
    /// What audits of parts of the tree reported: the final audit leaves it out.
    reported: reported::Reported,
    watch: Option<Arc<ShmWatch>>,
    errors: Vec<String>,
}

impl Shared {
    /// Takes in what the watch read: creations of the program's user await the next look.
    /// Returns whether a new temporary entry wants one too.
    fn take_in(&mut self, drained: Drained) -> bool {
        if drained.overflowed {
            self.evidence
                .lost_creations("the kernel's event queue overflowed".to_owned());
            self.evidence
                .temp
                .unobserved
                .get_or_insert_with(|| "the kernel's event queue overflowed".to_owned());
        }
        let mut temp_created = false;
        for (wd, name) in drained.others {
            let Some(dir) = self.temp_watches.get(&wd) else {
                continue;
            };
            if let Ok(Some(entry)) = TempEntry::at(dir.join(name))
                && entry.uid == self.baseline.uid
                && !self.temp_baseline.had(&entry)
            {
                self.evidence.temp.created(&entry);
                temp_created = true;
            }
        }
        let uid = self.baseline.uid;
        let dir = self.evidence.shm_dir().clone();
        let names = drained.names.into_iter().filter(|name| {
            dir.entry(name)
                .ok()
                .flatten()
                .is_some_and(|entry| entry.uid == uid)
        });
        self.evidence.created(names.collect::<Vec<_>>());
        temp_created
    }

    fn look(&mut self, moment: Moment) {
        if let Err(err) = self.evidence.look(moment) {
            self.error(format!("look at the program's tree: {err}"));
        }
        self.prune_if_due();
    }

    /// Prunes the evidence when enough records accumulated ([`Evidence::prune`] says what is
    /// forgotten and why): one listing of the shared memory directory and one read of SysV
    /// IPC per prune, amortised over at least as many records as the prune keeps.
    fn prune_if_due(&mut self) {
        if !self.evidence.wants_prune() {
            return;
        }
        let mut errors = Vec::new();
        let sysv = audit::read_sysv(&mut errors);
        let present: Option<std::collections::HashSet<u64>> = self
            .evidence
            .shm_dir()
            .list()
            .ok()
            .map(|entries| entries.into_iter().map(|e| e.inode).collect());
        if !errors.is_empty() {
            return;
        }
        self.evidence.prune(&sysv, present.as_ref());
        // What parts' audits reported is left out of the final audit only while it exists.
        if let Some(present) = &present {
            self.reported
                .shm
                .retain(|(_, inode)| present.contains(inode));
        }
        self.reported
            .sysv
            .retain(|key| sysv.iter().any(|o| (o.kind, o.id) == *key));
        self.reported
            .files
            .retain(|path| std::fs::symlink_metadata(path).is_ok());
        self.reported.temp.retain(|(path, inode)| {
            std::fs::symlink_metadata(path)
                .is_ok_and(|meta| std::os::unix::fs::MetadataExt::ino(&meta) == *inode)
        });
    }

    fn error(&mut self, text: String) {
        if self.errors.len() < ERRORS_KEPT && !self.errors.contains(&text) {
            self.errors.push(text);
        }
    }
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // A panic elsewhere cannot leave the evidence half-written in a way that matters more than
    // losing the audit would.
    shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl LeakWatch {
    /// Starts following the tree below `root` (not `root` itself) for objects of user `uid`:
    /// watch `/dev/shm` and the temporary directories ([`temp::temp_dirs`]), take the
    /// baseline. Call it before the program starts, inside a tokio runtime. Never fails: what
    /// cannot be watched or read is listed in the report's errors.
    #[must_use]
    pub fn start(root: i32, uid: u32) -> LeakWatch {
        LeakWatch::start_with(Path::new(SHM_DIR), temp::temp_dirs(), root, uid)
    }

    /// [`LeakWatch::start`] with another directory in place of `/dev/shm` and no temporary
    /// directory (tests use a directory of their own on the same tmpfs).
    #[must_use]
    pub fn start_in(shm_dir: &Path, root: i32, uid: u32) -> LeakWatch {
        LeakWatch::start_with(shm_dir, Vec::new(), root, uid)
    }

    /// [`LeakWatch::start`] with `shm_dir` in place of `/dev/shm` and `temp_dirs` in place of
    /// the temporary directories of hangwatch's environment.
    #[must_use]
    pub fn start_with(shm_dir: &Path, temp_dirs: Vec<PathBuf>, root: i32, uid: u32) -> LeakWatch {
        let mut errors = Vec::new();
        let dir = ShmDir::open(shm_dir).unwrap_or_else(|err| {
            errors.push(format!("look at {}: {err}", shm_dir.display()));
            ShmDir {
                path: shm_dir.to_owned(),
                device: None,
            }
        });
        let mut evidence = Evidence::new(root, dir.clone());
        // The watch comes first, so that no creation falls between the snapshot and it.
        let watch = if dir.device.is_some() {
            match ShmWatch::new(&dir.path) {
                Ok(watch) => Some(Arc::new(watch)),
                Err(err) => {
                    evidence.lost_creations(err.to_string());
                    None
                }
            }
        } else {
            None
        };
        // A temporary directory that is the shared memory directory (`TMPDIR=/dev/shm`) is
        // audited as that: one inotify instance has one watch per directory.
        let temp_dirs = temp::distinct_dirs(std::iter::once(dir.path.clone()).chain(temp_dirs))
            .into_iter()
            .skip(usize::from(dir.device.is_some()))
            .collect::<Vec<_>>();
        let mut temp_watches = HashMap::new();
        for temp_dir in &temp_dirs {
            let added = match &watch {
                Some(watch) => watch.add(temp_dir),
                None => Err(std::io::Error::other(format!(
                    "no watch on {}",
                    dir.path.display()
                ))),
            };
            match added {
                Ok(wd) => {
                    temp_watches.insert(wd, temp_dir.clone());
                }
                Err(err) => {
                    evidence
                        .temp
                        .unobserved
                        .get_or_insert_with(|| format!("{}: {err}", temp_dir.display()));
                }
            }
        }
        evidence.temp.dirs.clone_from(&temp_dirs);
        let baseline = Baseline::take(&dir, uid);
        let temp_baseline = TempBaseline::take(temp_dirs, uid);
        let shared = Arc::new(Mutex::new(Shared {
            baseline: Arc::new(baseline),
            temp_baseline: Arc::new(temp_baseline),
            temp_watches,
            evidence,
            reported: reported::Reported::default(),
            watch: watch.clone(),
            errors,
        }));
        let task = watch.map(|watch| tokio::spawn(follow(Arc::clone(&shared), watch)));
        LeakWatch { shared, task }
    }

    /// Looks at the tree now, taking in creations not yet looked at: call it when a stop is
    /// about to begin, before its first signal.
    pub fn observe(&self) {
        let mut shared = lock(&self.shared);
        let drained = shared.watch.as_ref().map(|watch| watch.drain_now());
        match drained {
            Some(Ok(drained)) => {
                shared.take_in(drained);
            }
            Some(Err(err)) => shared.evidence.lost_creations(err.to_string()),
            None => {}
        }
        shared.look(Moment::Stop);
    }

    /// Notes the program itself, just started: it joins the tree's PIDs with its command line,
    /// so that what it creates can be named after it even if no look ever sees it alive.
    pub fn note_started(&self, pid: i32) {
        let info = hangwatch_process::stat::read_stat(pid)
            .ok()
            .flatten()
            .map(|stat| stat.info());
        lock(&self.shared)
            .evidence
            .tree
            .entry(pid)
            .or_default()
            .info = info;
    }

    /// How many looks at the tree have been taken so far.
    #[must_use]
    pub fn looks(&self) -> u64 {
        lock(&self.shared).evidence.looks
    }

    /// Notes that `pid`, a process of the tree, was reaped: it joins the tree's PIDs (SysV
    /// segments name their creator by PID), with the time after which the PID may be reused.
    pub fn note_reaped(&self, pid: i32) {
        let mut shared = lock(&self.shared);
        shared.evidence.reaped(pid);
        shared.prune_if_due();
    }

    /// Begins the audit of one part of the tree, now gone while the rest may run on (a
    /// service of `hangwatch up` whose program ended): picks the objects the evidence links
    /// to that part alone. `None` when there are none, which costs next to nothing. Otherwise
    /// [`PartAudit::run`] judges them (blocking, off the caller's loop) and
    /// [`LeakWatch::reported`] takes the result in. See [`mod@part`].
    #[must_use]
    pub fn audit_part(&self, part: &Part) -> Option<PartAudit> {
        let shared = lock(&self.shared);
        let temp = temp::pick(
            &shared.temp_baseline,
            &shared.evidence.temp,
            &shared.reported.temp,
            part,
        );
        part::pick(
            &shared.baseline,
            &shared.evidence,
            &shared.reported,
            part,
            temp,
        )
    }

    /// Takes in what a part's audit found: the objects are noted as reported, so that neither
    /// another part's audit nor [`LeakWatch::finish`] lists them again. Returns the part's
    /// report (policy `report`: nothing was removed).
    pub fn reported(&self, found: PartFound) -> LeakReport {
        let mut shared = lock(&self.shared);
        let shared = &mut *shared;
        let (objects, errors, took) =
            part::settle(found, &mut shared.evidence, &mut shared.reported);
        LeakReport {
            policy: LeakPolicy::Report,
            leaked: objects
                .iter()
                .any(|o| o.attribution == hangwatch_protocol::report::Attribution::Attributable),
            objects,
            audit_ms: took.as_secs_f64() * 1000.0,
            errors,
            ..LeakReport::default()
        }
    }

    /// A copy of the inotify descriptor the watch reads, if it has one. Its last close waits
    /// for an RCU grace period (10 to 20 ms on an idle machine), which a short run would pay
    /// on its way out: hangwatch hands this copy to its guardian, which closes it after
    /// hangwatch is gone.
    #[must_use]
    pub fn inotify_copy(&self) -> Option<std::os::fd::OwnedFd> {
        let watch = lock(&self.shared).watch.clone()?;
        watch.fd_copy().ok()
    }

    /// Audits what the run left, once its tree is gone, and cleans under
    /// [`LeakPolicy::Clean`]. `leftovers` is how many processes outlived the program. Objects
    /// already reported by [`LeakWatch::reported`] are left out.
    #[must_use]
    pub fn finish(mut self, policy: LeakPolicy, leftovers: usize) -> LeakReport {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        let shared = lock(&self.shared);
        let mut report = audit::audit_except(
            &shared.baseline,
            &shared.evidence,
            policy,
            leftovers,
            &shared.reported,
        );
        temp::audit_into(
            &shared.temp_baseline,
            &shared.evidence.temp,
            &shared.reported.temp,
            &mut report,
        );
        report.errors.extend(shared.errors.iter().cloned());
        report
    }
}

impl Drop for LeakWatch {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The watcher task: a look after each batch of creations, spaced by [`LOOK_SPACING`].
async fn follow(shared: Arc<Mutex<Shared>>, watch: Arc<ShmWatch>) {
    loop {
        let drained = match watch.next().await {
            Ok(drained) => drained,
            Err(err) => {
                lock(&shared).evidence.lost_creations(err.to_string());
                return;
            }
        };
        let cost = {
            let mut shared = lock(&shared);
            let temp_created = shared.take_in(drained);
            if !shared.evidence.has_pending() && !temp_created {
                continue;
            }
            let before = shared.evidence.look_time;
            shared.look(Moment::Creation);
            shared.evidence.look_time.saturating_sub(before)
        };
        if cost > Duration::ZERO {
            tokio::time::sleep(cost * LOOK_SPACING).await;
        }
    }
}

/// The exit code of a run under `report`'s policy: [`exit_code::LEAKED`] in place of 0 when the
/// run leaked under [`LeakPolicy::Fail`]; any other code is kept (the run failed anyway, and the
/// leak is in the report).
#[must_use]
pub fn exit_code(report: &LeakReport, code: i32) -> i32 {
    if report.policy == LeakPolicy::Fail && report.leaked && code == 0 {
        exit_code::LEAKED
    } else {
        code
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(policy: LeakPolicy, leaked: bool) -> LeakReport {
        LeakReport {
            policy,
            leaked,
            ..LeakReport::default()
        }
    }

    #[test]
    fn fail_turns_only_success_into_the_leak_code() {
        assert_eq!(exit_code(&report(LeakPolicy::Fail, true), 0), 123);
        assert_eq!(exit_code(&report(LeakPolicy::Fail, true), 124), 124);
        assert_eq!(exit_code(&report(LeakPolicy::Fail, true), 3), 3);
        assert_eq!(exit_code(&report(LeakPolicy::Fail, false), 0), 0);
        assert_eq!(exit_code(&report(LeakPolicy::Report, true), 0), 0);
        assert_eq!(exit_code(&report(LeakPolicy::Clean, true), 0), 0);
    }
}
