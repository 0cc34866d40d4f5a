//! Evidence gathered while the program's tree is alive: which process held which object.
//!
//! Linux records no creator for a `/dev/shm` file, so the only proof that the program made one
//! is to catch a process of its tree holding it: mapped (`/proc/PID/maps`) or open
//! (`/proc/PID/fd`). [`Evidence::look`] takes one such look at every live process of the tree;
//! the owner calls it at the moments that matter ([`Moment`]). Each look also records the
//! tree's PIDs (SysV shared memory does name its creator) and, when a stop begins, the Unix
//! sockets the tree serves and the files it holds locks on.
//!
//! A look costs what the tree holds, not what the machine runs: it reads the tree below the
//! root only ([`ProcessTable::subtree`]), and finds locks in each process's
//! `/proc/PID/fdinfo/FD` (Linux 4.1) rather than in `/proc/locks`, whose first read after a
//! quiet spell waits for an RCU grace period (about 8 ms here) on the path to a restart.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use hangwatch_process::stat::Stat;
use hangwatch_process::tree::ProcessTable;
use hangwatch_protocol::report::ProcessInfo;

use crate::procfs::{self, Device};
use crate::shm::ShmDir;
use crate::temp::TempEvidence;

/// When a look at the tree was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moment {
    /// The first look after new entries appeared in the shared memory directory: whoever holds
    /// them now most likely created them.
    Creation,
    /// A stop is about to begin (or leftovers are about to be stopped): the last look at the
    /// tree alive, taken before any signal.
    Stop,
}

/// How a process held an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Mapped into its memory.
    Mapped,
    /// Open as a file descriptor.
    Open,
    /// A SysV segment attached.
    Attached,
    /// A Unix socket it listened on (or a datagram socket bound to the path).
    Serving,
    /// A file it held a lock on.
    Locked,
    /// A directory it worked in (or one above its working directory).
    WorkingDirectory,
}

impl Hold {
    /// The verb for evidence texts.
    #[must_use]
    pub fn verb(self) -> &'static str {
        match self {
            Hold::Mapped => "mapped",
            Hold::Open => "held open",
            Hold::Attached => "attached",
            Hold::Serving => "listened on",
            Hold::Locked => "locked",
            Hold::WorkingDirectory => "worked in",
        }
    }
}

/// One process of the tree seen holding one object.
#[derive(Debug, Clone)]
pub struct Sighting {
    /// The holder.
    pub process: ProcessInfo,
    /// How it held it.
    pub hold: Hold,
    /// At which look.
    pub moment: Moment,
}

/// What was seen of one `/dev/shm` inode.
#[derive(Debug, Clone, Default)]
pub struct ShmSeen {
    /// The processes of the tree seen holding it (the first few).
    pub holders: Vec<Sighting>,
    /// At the first look after it was created: whether a process of the tree held it.
    /// `None` when its creation was not observed (or the tree was already gone).
    pub held_at_creation: Option<bool>,
}

/// A file the tree held at a stop: a socket it served or a file it locked.
#[derive(Debug, Clone)]
pub struct HeldFile {
    /// The path, absolute.
    pub path: PathBuf,
    /// For a locked file, its device and inode (a socket file's inode is not the socket's).
    pub file: Option<(Device, u64)>,
    /// Who held it and how.
    pub sighting: Sighting,
}

/// A PID that belonged to the tree.
#[derive(Debug, Clone, Default)]
pub struct TreeMember {
    /// What a look saw of it, when one did and it held something.
    pub info: Option<ProcessInfo>,
    /// When hangwatch reaped it, if it did.
    pub gone_at: Option<SystemTime>,
}

/// Everything seen of the tree while it was alive.
#[derive(Debug)]
pub struct Evidence {
    root: i32,
    shm: ShmDir,
    /// Every PID seen in the tree or reaped from it.
    pub tree: HashMap<i32, TreeMember>,
    /// By inode.
    pub shm_seen: HashMap<u64, ShmSeen>,
    /// SysV segments attached by the tree, by ID.
    pub sysv_attached: HashMap<i32, Sighting>,
    /// Sockets the tree served and files it locked, at stops.
    pub files: Vec<HeldFile>,
    /// New entries of the temporary directories and who used them.
    pub temp: TempEvidence,
    /// Names created since the last look.
    pending: Vec<OsString>,
    /// Why creations could not all be observed, if they could not.
    pub creations_unobserved: Option<String>,
    /// Looks taken.
    pub looks: u64,
    /// Their total cost.
    pub look_time: Duration,
    /// Start times of the tree's processes as looks saw them, to tell a live member from a
    /// stranger that took its PID (see [`Evidence::prune`]).
    started: HashMap<i32, u64>,
    /// How many records [`Evidence::wants_prune`] lets accumulate before the next prune.
    prune_at: usize,
}

/// The most holders kept per object: enough to name the culprit, bounded for huge pools.
const HOLDERS_KEPT: usize = 4;

/// Records kept before the first prune: below this, a prune would cost more than it saves.
const PRUNE_FLOOR: usize = 1024;

/// How many seconds after a reap a SysV object may still name the reaped PID as its own: the
/// kernel's `ctime` has a resolution of one second (see [`crate::audit::tree_member`]).
const REAP_SLACK: Duration = Duration::from_secs(2);

impl Evidence {
    /// No evidence yet about the tree below `root` (which is not part of it).
    #[must_use]
    pub fn new(root: i32, shm: ShmDir) -> Evidence {
        Evidence {
            root,
            shm,
            tree: HashMap::new(),
            shm_seen: HashMap::new(),
            sysv_attached: HashMap::new(),
            files: Vec::new(),
            temp: TempEvidence::default(),
            pending: Vec::new(),
            creations_unobserved: None,
            looks: 0,
            look_time: Duration::ZERO,
            started: HashMap::new(),
            prune_at: PRUNE_FLOOR,
        }
    }

    /// How many records the evidence holds: processes, objects, files.
    #[must_use]
    pub fn records(&self) -> usize {
        self.tree.len()
            + self.shm_seen.len()
            + self.sysv_attached.len()
            + self.files.len()
            + self.temp.seen.len()
    }

    /// Whether enough records accumulated since the last prune to make one worth its cost:
    /// twice as many as it left (at least 1,024), so that pruning costs O(1) per
    /// record amortised and memory stays within twice what the live tree needs.
    #[must_use]
    pub fn wants_prune(&self) -> bool {
        self.records() >= self.prune_at
    }

    /// Forgets what can no longer serve an audit, so that a daemon that sees a process a
    /// second for months keeps a record the size of what is alive, not of what ever was.
    ///
    /// Evidence serves only to judge an object that exists at the audit; an object that does
    /// not exist now can only be made later, and then by a process alive then. So:
    ///
    /// - a `/dev/shm` inode not in `shm_present` is gone (a later file that gets its number
    ///   is a new object, whose evidence must not be an old one's);
    /// - a SysV segment ID not among `sysv` is gone the same way;
    /// - a socket or lock file whose path names nothing now is gone;
    /// - a process is forgotten once it is dead (reaped by hangwatch more than
    ///   two seconds ago, or its PID no longer running with the start time a look saw)
    ///   *and* no SysV object in `sysv` names its PID (creator, last sender or receiver):
    ///   a dead process makes no new object, and an object made later under its PID is a
    ///   stranger's. Its record is what tells such a stranger from it while an object made
    ///   before its death exists, so it stays that long. A process whose start time no look
    ///   saw and that hangwatch never reaped stays while its PID runs (it may be it).
    ///
    /// `shm_present` is `None` when the directory could not be listed: its evidence is kept.
    pub fn prune(&mut self, sysv: &[procfs::SysvObject], shm_present: Option<&HashSet<u64>>) {
        let now = SystemTime::now();
        if let Some(present) = shm_present {
            self.shm_seen.retain(|inode, _| present.contains(inode));
        }
        let segments: HashSet<i32> = sysv
            .iter()
            .filter(|o| o.kind == procfs::SysvKind::SharedMemory)
            .map(|o| o.id)
            .collect();
        self.sysv_attached.retain(|id, _| segments.contains(id));
        self.files
            .retain(|held| std::fs::symlink_metadata(&held.path).is_ok());
        self.temp.forget_gone();
        let named: HashSet<i32> = sysv
            .iter()
            .flat_map(|o| {
                let (sender, receiver) = o.last_users.unwrap_or((0, 0));
                [o.cpid.unwrap_or(0), sender, receiver]
            })
            .filter(|pid| *pid > 0)
            .collect();
        let started = &mut self.started;
        self.tree.retain(|pid, member| {
            if named.contains(pid) {
                return true;
            }
            let dead = match member.gone_at {
                Some(gone) => now.duration_since(gone).is_ok_and(|d| d >= REAP_SLACK),
                None => {
                    let seen = member
                        .info
                        .as_ref()
                        .map(|info| info.start_time)
                        .or_else(|| started.get(pid).copied());
                    match hangwatch_process::stat::read_stat(*pid) {
                        Ok(Some(stat)) => seen.is_some_and(|seen| seen != stat.start_time),
                        Ok(None) => true,
                        // Unreadable: keep it, as if alive.
                        Err(_) => false,
                    }
                }
            };
            if dead {
                started.remove(pid);
            }
            !dead
        });
        self.started.retain(|pid, _| self.tree.contains_key(pid));
        self.prune_at = (self.records() * 2).max(PRUNE_FLOOR);
    }

    /// The shared memory directory looked at.
    #[must_use]
    pub fn shm_dir(&self) -> &ShmDir {
        &self.shm
    }

    /// Notes entries created in the shared memory directory, to be resolved by the next look.
    pub fn created(&mut self, names: impl IntoIterator<Item = OsString>) {
        self.pending.extend(names);
    }

    /// Whether creations wait for a look.
    #[must_use]
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Notes that some creations went unobserved (`why`), so that no object is judged by a
    /// creation look that never happened.
    pub fn lost_creations(&mut self, why: String) {
        self.creations_unobserved.get_or_insert(why);
    }

    /// Notes that hangwatch reaped `pid`, a process of the tree.
    pub fn reaped(&mut self, pid: i32) {
        self.tree.entry(pid).or_default().gone_at = Some(SystemTime::now());
    }

    /// Looks at every live process of the tree now. See the module documentation.
    pub fn look(&mut self, moment: Moment) -> io::Result<()> {
        let started = Instant::now();
        let result = self.look_inner(moment);
        self.looks += 1;
        self.look_time += started.elapsed();
        result
    }

    fn look_inner(&mut self, moment: Moment) -> io::Result<()> {
        let table = ProcessTable::subtree(self.root)?;
        let tree: Vec<&Stat> = table
            .descendants(self.root)
            .into_iter()
            .filter(|stat| !stat.is_zombie())
            .collect();
        let pending = std::mem::take(&mut self.pending);
        if tree.is_empty() {
            // Nobody left to catch holding anything: these creations stay unjudged.
            return Ok(());
        }

        let stop = moment == Moment::Stop;
        // Every holder (up to the few kept), not only the first: whether an object was held by
        // one service's processes alone is what attributes it to that service.
        let mut held: HashMap<u64, Vec<(i32, Hold)>> = HashMap::new();
        let mut hold = |inode: u64, pid: i32, how: Hold| {
            let holders = held.entry(inode).or_default();
            if holders.len() < HOLDERS_KEPT && !holders.iter().any(|(p, _)| *p == pid) {
                holders.push((pid, how));
            }
        };
        let mut sysv: Vec<(i32, i32)> = Vec::new();
        let mut sockets: Vec<(u64, i32)> = Vec::new();
        let mut locked: Vec<(LockedFile, i32)> = Vec::new();
        let mut infos: HashMap<i32, ProcessInfo> = HashMap::new();
        for stat in &tree {
            self.tree.entry(stat.pid).or_default();
            self.started.insert(stat.pid, stat.start_time);
            let mapped = match read_mapped(stat.pid, self.shm.device) {
                Ok(mapped) => mapped,
                Err(err) if is_unreadable(&err) => continue,
                Err(err) => return Err(err),
            };
            for inode in mapped.inodes {
                hold(inode, stat.pid, Hold::Mapped);
            }
            sysv.extend(mapped.sysv_shm.into_iter().map(|id| (id, stat.pid)));
            let fds = read_fds(stat.pid, &self.shm, stop)?;
            for inode in fds.shm {
                hold(inode, stat.pid, Hold::Open);
            }
            if stop {
                sockets.extend(fds.sockets.into_iter().map(|inode| (inode, stat.pid)));
                locked.extend(fds.locked.into_iter().map(|file| (file, stat.pid)));
            }
        }
        let mut info = |pid: i32| -> Option<ProcessInfo> {
            if let Some(info) = infos.get(&pid) {
                return Some(info.clone());
            }
            let info = table.get(pid)?.info();
            infos.insert(pid, info.clone());
            Some(info)
        };

        for name in pending {
            let Some(entry) = self.shm.entry(&name)? else {
                continue;
            };
            let seen = self.shm_seen.entry(entry.inode).or_default();
            let now = held.contains_key(&entry.inode);
            seen.held_at_creation = Some(seen.held_at_creation.unwrap_or(false) || now);
        }
        for (inode, holders) in held {
            let seen = self.shm_seen.entry(inode).or_default();
            for (pid, hold) in holders {
                if seen.holders.len() < HOLDERS_KEPT
                    && !seen.holders.iter().any(|s| s.process.pid == pid)
                    && let Some(process) = info(pid)
                {
                    seen.holders.push(Sighting {
                        process,
                        hold,
                        moment,
                    });
                }
            }
        }
        for (id, pid) in sysv {
            if !self.sysv_attached.contains_key(&id)
                && let Some(process) = info(pid)
            {
                self.sysv_attached.insert(
                    id,
                    Sighting {
                        process,
                        hold: Hold::Attached,
                        moment,
                    },
                );
            }
        }
        if stop {
            self.look_at_sockets(&sockets, &mut info)?;
            self.look_at_locks(locked, &mut info);
        }
        if !self.temp.seen.is_empty() {
            let pids: Vec<i32> = tree.iter().map(|stat| stat.pid).collect();
            let uses = crate::temp::uses_of(&pids)?;
            self.temp.saw(&uses, moment, &mut info);
        }
        for (pid, process) in infos {
            self.tree.entry(pid).or_default().info = Some(process);
        }
        Ok(())
    }

    /// Records the sockets among `held` (inode, holder) that serve on a path.
    fn look_at_sockets(
        &mut self,
        held: &[(u64, i32)],
        info: &mut impl FnMut(i32) -> Option<ProcessInfo>,
    ) -> io::Result<()> {
        if held.is_empty() {
            return Ok(());
        }
        let text = match std::fs::read_to_string("/proc/net/unix") {
            Ok(text) => text,
            Err(err) if is_unreadable(&err) => return Ok(()),
            Err(err) => return Err(err),
        };
        let serving: HashMap<u64, String> = procfs::parse_net_unix(&text)
            .into_iter()
            .filter(|socket| socket.serving)
            .map(|socket| (socket.inode, socket.path))
            .collect();
        for (inode, pid) in held {
            let Some(path) = serving.get(inode) else {
                continue;
            };
            let path = absolute(*pid, Path::new(path));
            if self.files.iter().any(|f| f.path == path) {
                continue;
            }
            let Some(process) = info(*pid) else { continue };
            self.files.push(HeldFile {
                path,
                file: None,
                sighting: Sighting {
                    process,
                    hold: Hold::Serving,
                    moment: Moment::Stop,
                },
            });
        }
        Ok(())
    }

    /// Records the files the tree held locks on (file, holder).
    fn look_at_locks(
        &mut self,
        locked: Vec<(LockedFile, i32)>,
        info: &mut impl FnMut(i32) -> Option<ProcessInfo>,
    ) {
        for (file, pid) in locked {
            if self.files.iter().any(|f| f.path == file.path) {
                continue;
            }
            let Some(process) = info(pid) else { continue };
            self.files.push(HeldFile {
                path: file.path,
                file: Some((file.device, file.inode)),
                sighting: Sighting {
                    process,
                    hold: Hold::Locked,
                    moment: Moment::Stop,
                },
            });
        }
    }
}

/// The shared objects `pid` maps: asked of the kernel mapping by mapping where it can answer
/// (Linux 6.11, shared mappings only: a semaphore or shared memory must be mapped shared to be
/// of any use), read from the text of `/proc/PID/maps` otherwise.
pub(crate) fn read_mapped(pid: i32, device: Option<Device>) -> io::Result<procfs::Mapped> {
    if let Some(mappings) = hangwatch_process::mappings::shared_file_mappings(pid)? {
        let mut mapped = procfs::Mapped::default();
        for mapping in mappings {
            if mapping.path.starts_with("/SYSV") {
                if let Ok(id) = i32::try_from(mapping.inode)
                    && !mapped.sysv_shm.contains(&id)
                {
                    mapped.sysv_shm.push(id);
                }
            } else if device.is_some_and(|d| {
                (u64::from(mapping.device.0), u64::from(mapping.device.1)) == (d.major, d.minor)
            }) && !mapped.inodes.contains(&mapping.inode)
            {
                mapped.inodes.push(mapping.inode);
            }
        }
        return Ok(mapped);
    }
    let text = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
    Ok(procfs::parse_maps(&text, device))
}

/// What one process holds through its file descriptors.
#[derive(Debug, Default)]
pub(crate) struct FdHoldings {
    /// Inodes of shared memory directory files.
    pub shm: Vec<u64>,
    /// Inodes of sockets.
    pub sockets: Vec<u64>,
    /// Regular files it holds a lock on (asked for only).
    pub locked: Vec<LockedFile>,
}

/// A regular file a process holds a lock on (`flock`, POSIX or OFD), through one of its
/// descriptors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LockedFile {
    /// The path the descriptor names.
    pub path: PathBuf,
    /// The file's device.
    pub device: Device,
    /// The file's inode.
    pub inode: u64,
}

/// Reads `/proc/PID/fd`: one `readlink` per descriptor, and a `stat` for those in the shared
/// memory directory. With `locks`, also a `stat` and a read of `/proc/PID/fdinfo/FD` for each
/// descriptor that names a path: the kernel lists there the locks the process holds through
/// it. A process gone or not ours to inspect holds nothing we can see.
pub(crate) fn read_fds(pid: i32, shm: &ShmDir, locks: bool) -> io::Result<FdHoldings> {
    let mut holdings = FdHoldings::default();
    let dir = match std::fs::read_dir(format!("/proc/{pid}/fd")) {
        Ok(dir) => dir,
        Err(err) if is_unreadable(&err) => return Ok(holdings),
        Err(err) => return Err(err),
    };
    for entry in dir {
        let Ok(entry) = entry else { continue };
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let bytes = target.as_os_str().as_encoded_bytes();
        if let Some(rest) = bytes.strip_prefix(b"socket:[") {
            if let Some(inode) = std::str::from_utf8(rest)
                .ok()
                .and_then(|r| r.strip_suffix(']'))
                .and_then(|r| r.parse().ok())
            {
                holdings.sockets.push(inode);
            }
            continue;
        }
        if !target.is_absolute() {
            continue;
        }
        let in_shm = shm.contains(&target);
        if !in_shm && !locks {
            continue;
        }
        let Ok(meta) = std::fs::metadata(entry.path()) else {
            continue;
        };
        let device = Device::from_dev_t(meta.dev());
        if in_shm && Some(device) == shm.device && !holdings.shm.contains(&meta.ino()) {
            holdings.shm.push(meta.ino());
        }
        if locks && meta.is_file() && holds_lock(pid, &entry.file_name()) {
            holdings.locked.push(LockedFile {
                path: target,
                device,
                inode: meta.ino(),
            });
        }
    }
    Ok(holdings)
}

/// Whether `/proc/PID/fdinfo/FD` lists a lock: one the process (or the open file, for `flock`
/// and OFD locks) holds on the file through that descriptor.
fn holds_lock(pid: i32, fd: &std::ffi::OsStr) -> bool {
    let mut path = PathBuf::from(format!("/proc/{pid}/fdinfo"));
    path.push(fd);
    std::fs::read_to_string(path)
        .is_ok_and(|text| text.lines().any(|line| line.starts_with("lock:")))
}

/// `path` as `pid` named it, made absolute with its working directory.
pub(crate) fn absolute(pid: i32, path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_owned();
    }
    match std::fs::read_link(format!("/proc/{pid}/cwd")) {
        Ok(cwd) => cwd.join(path),
        Err(_) => path.to_owned(),
    }
}

/// Whether reading a process's `/proc` files failed only because it is gone or not ours to
/// inspect. Both mean "nothing to see there", not a failed audit.
pub(crate) fn is_unreadable(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
    ) || err.raw_os_error() == Some(nix::libc::ESRCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_look_at_an_empty_tree_leaves_creations_unjudged() {
        let shm = ShmDir::open(Path::new(crate::shm::SHM_DIR)).expect("open");
        // A process with no children of its own: its tree is empty.
        let mut leaf = std::process::Command::new("sleep")
            .arg("10")
            .spawn()
            .expect("spawn sleep");
        let mut evidence = Evidence::new(leaf.id() as i32, shm);
        evidence.created(["hangwatch-leaks-never-created".into()]);
        let looked = evidence.look(Moment::Creation);
        let _ = leaf.kill();
        let _ = leaf.wait();
        looked.expect("look");
        assert_eq!(evidence.looks, 1);
        assert!(!evidence.has_pending());
        assert!(evidence.shm_seen.is_empty());
        assert!(evidence.tree.is_empty());
    }

    #[test]
    fn own_descriptors_are_readable() {
        let shm = ShmDir::open(Path::new(crate::shm::SHM_DIR)).expect("open");
        let listener = std::os::unix::net::UnixDatagram::unbound().expect("socket");
        let holdings = read_fds(std::process::id() as i32, &shm, false).expect("read fds");
        assert!(!holdings.sockets.is_empty());
        drop(listener);
    }

    #[test]
    fn locks_are_found_through_the_descriptor_that_holds_them() {
        let me = std::process::id() as i32;
        let shm = ShmDir::open(Path::new(crate::shm::SHM_DIR)).expect("open");
        let dir = std::env::temp_dir();
        let locked_path = dir.join(format!("hangwatch-leaks-locked-{me}"));
        let open_path = dir.join(format!("hangwatch-leaks-open-{me}"));
        let locked = std::fs::File::create(&locked_path).expect("create");
        let open = std::fs::File::create(&open_path).expect("create");
        let lock = nix::fcntl::Flock::lock(locked, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|(_, errno)| errno)
            .expect("flock");
        let with = read_fds(me, &shm, true).expect("read fds");
        let without = read_fds(me, &shm, false).expect("read fds");
        drop(lock);
        drop(open);
        let _ = std::fs::remove_file(&locked_path);
        let _ = std::fs::remove_file(&open_path);
        let paths: Vec<&Path> = with.locked.iter().map(|f| f.path.as_path()).collect();
        assert!(paths.contains(&locked_path.as_path()), "{paths:?}");
        assert!(!paths.contains(&open_path.as_path()), "{paths:?}");
        assert!(without.locked.is_empty());
    }

    fn segment(id: i32, cpid: i32) -> procfs::SysvObject {
        procfs::SysvObject {
            kind: procfs::SysvKind::SharedMemory,
            key: 0,
            id,
            size: 4096,
            uid: 0,
            cuid: 0,
            cpid: Some(cpid),
            attached: Some(0),
            last_users: None,
            ctime: 0,
        }
    }

    fn sighting(pid: i32) -> Sighting {
        Sighting {
            process: ProcessInfo {
                pid,
                start_time: 1,
                ppid: 1,
                pgid: pid,
                command: "prog".to_owned(),
            },
            hold: Hold::Mapped,
            moment: Moment::Creation,
        }
    }

    #[test]
    fn prune_forgets_the_dead_and_the_gone_and_keeps_what_an_audit_may_need() {
        let shm = ShmDir::open(Path::new("/nonexistent/hangwatch-shm")).expect("open");
        let mut evidence = Evidence::new(1, shm);
        let long_ago = SystemTime::now() - Duration::from_secs(60);
        let reaped = |at| TreeMember {
            info: None,
            gone_at: Some(at),
        };
        // Reaped a minute ago, named by nothing: forgotten.
        evidence.tree.insert(1_000_001, reaped(long_ago));
        // Reaped a minute ago, but the creator of a segment that exists: kept.
        evidence.tree.insert(1_000_002, reaped(long_ago));
        // Reaped just now: within the slack of SysV's one-second clock, kept.
        evidence.tree.insert(1_000_003, reaped(SystemTime::now()));
        // Alive, with the start time a look saw: kept.
        let mut alive = std::process::Command::new("sleep")
            .arg("10")
            .spawn()
            .expect("spawn sleep");
        let alive_pid = alive.id() as i32;
        let alive_start = hangwatch_process::stat::read_stat(alive_pid)
            .expect("stat")
            .expect("alive")
            .start_time;
        evidence.tree.insert(alive_pid, TreeMember::default());
        evidence.started.insert(alive_pid, alive_start);
        // Exited and reaped by someone else (here, this test): forgotten.
        let mut exited = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let exited_pid = exited.id() as i32;
        exited.wait().expect("wait true");
        evidence.tree.insert(exited_pid, TreeMember::default());
        evidence.started.insert(exited_pid, 1);
        // A PID that runs now, but with another start time than the look saw: a stranger
        // took it, forgotten.
        let me = std::process::id() as i32;
        evidence.tree.insert(me, TreeMember::default());
        evidence.started.insert(me, 1);
        // Objects: inode 11 is still in the directory, 12 is not; segment 7 exists, 8 not.
        evidence.shm_seen.insert(11, ShmSeen::default());
        evidence.shm_seen.insert(12, ShmSeen::default());
        evidence.sysv_attached.insert(7, sighting(alive_pid));
        evidence.sysv_attached.insert(8, sighting(alive_pid));
        evidence.files.push(HeldFile {
            path: PathBuf::from("/nonexistent/hangwatch-socket"),
            file: None,
            sighting: sighting(alive_pid),
        });

        evidence.prune(&[segment(7, 1_000_002)], Some(&HashSet::from([11])));
        let _ = alive.kill();
        let _ = alive.wait();

        let mut kept: Vec<i32> = evidence.tree.keys().copied().collect();
        kept.sort_unstable();
        let mut expected = vec![1_000_002, 1_000_003, alive_pid];
        expected.sort_unstable();
        assert_eq!(kept, expected);
        assert_eq!(
            evidence.started.keys().copied().collect::<Vec<_>>(),
            [alive_pid]
        );
        assert_eq!(evidence.shm_seen.keys().copied().collect::<Vec<_>>(), [11]);
        assert_eq!(
            evidence.sysv_attached.keys().copied().collect::<Vec<_>>(),
            [7]
        );
        assert!(evidence.files.is_empty());
        // The next prune waits until the records have doubled, or reached the floor.
        assert!(!evidence.wants_prune());

        // An unreadable directory keeps its evidence.
        evidence.prune(&[], None);
        assert_eq!(evidence.shm_seen.len(), 1);
    }

    #[test]
    fn prune_is_due_once_the_records_double() {
        let shm = ShmDir::open(Path::new("/nonexistent/hangwatch-shm")).expect("open");
        let mut evidence = Evidence::new(1, shm);
        let long_ago = SystemTime::now() - Duration::from_secs(60);
        for pid in 0..PRUNE_FLOOR as i32 - 1 {
            evidence.reaped(2_000_000 + pid);
        }
        assert!(!evidence.wants_prune());
        evidence.reaped(3_000_000);
        assert!(evidence.wants_prune());
        for member in evidence.tree.values_mut() {
            member.gone_at = Some(long_ago);
        }
        evidence.prune(&[], None);
        assert!(evidence.tree.is_empty());
        assert!(!evidence.wants_prune());
    }
}
