//! The process tree under a root, found in `/proc`.
//!
//! Two ways to build a [`ProcessTable`]: [`ProcessTable::scan`] reads every process on the
//! machine, and [`ProcessTable::subtree`] reads only a root and its descendants by following
//! `/proc/PID/task/TID/children` down from the root. The second costs what the tree holds, not
//! what the machine runs, but needs `CONFIG_PROC_CHILDREN` (set by most distributions, not by
//! every kernel); without it, it falls back to the first. Either way a process may exit
//! mid-read; it is skipped, and owners that must not miss anything read again after each exit.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::io::{self, Read};
use std::sync::OnceLock;

use crate::stat::{Stat, is_gone, read_stat};

/// Every process on the machine, by PID: the one listing of `/proc` that every whole-machine
/// look builds on (a [`ProcessTable::scan`], the search for holders of a leaked temp directory,
/// the diagnosis's search for the other end of a pipe). A process may be gone by the time the
/// caller reads it.
pub fn pids() -> io::Result<Vec<i32>> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let entry = match entry {
            Ok(entry) => entry,
            Err(err) if is_gone(&err) => continue,
            Err(err) => return Err(err),
        };
        if let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse().ok())
        {
            pids.push(pid);
        }
    }
    Ok(pids)
}

/// One scan of `/proc`: every process with its parent.
#[derive(Debug, Default)]
pub struct ProcessTable {
    by_pid: HashMap<i32, Stat>,
    /// Environments read so far (`/proc/PID/environ`, as a set of entries), each at most once
    /// per scan: a supervisor asks about the same processes once per service it stops.
    environ: RefCell<HashMap<i32, HashSet<Vec<u8>>>>,
}

impl ProcessTable {
    /// Reads every process in `/proc`: the one full scan of the machine's processes, for every
    /// owner that needs one (a stop's sweep, survivors of a previous instance, holders of a
    /// leaked object). A process that exits mid-read is skipped.
    pub fn scan() -> io::Result<ProcessTable> {
        let mut by_pid = HashMap::new();
        for pid in pids()? {
            if let Some(stat) = read_stat(pid)? {
                by_pid.insert(pid, stat);
            }
        }
        Ok(ProcessTable {
            by_pid,
            environ: RefCell::default(),
        })
    }

    /// Reads `root` and its descendants only: what the children files of every thread of
    /// every process of the tree name, recursively (a process forked by a thread is listed
    /// under that thread, and an orphan adopted by a subreaper under any thread of it).
    ///
    /// Every query of the table answers as on a full [`ProcessTable::scan`] for `root`'s
    /// tree: its children, descendants, groups and environments. A subreaper asking about its
    /// own tree loses nothing: every descendant, even one that left its group and session with
    /// `setsid` and a double fork, is re-parented to it, never to PID 1. Processes outside the
    /// tree (a previous instance's survivors, anything re-parented away) are not in it.
    ///
    /// Falls back to [`ProcessTable::scan`] when the kernel has no children files
    /// (`CONFIG_PROC_CHILDREN` unset). A process that exits between the read of its parent's
    /// children file and its own `stat` is skipped; the table is empty if `root` is gone.
    pub fn subtree(root: i32) -> io::Result<ProcessTable> {
        if !children_files() {
            return ProcessTable::scan();
        }
        let mut by_pid = HashMap::new();
        let mut next = vec![root];
        let mut kids = Vec::new();
        while let Some(pid) = next.pop() {
            if by_pid.contains_key(&pid) {
                continue;
            }
            let Some(stat) = read_stat(pid)? else {
                continue;
            };
            kids.clear();
            if !stat.is_zombie() {
                read_children(pid, &mut kids)?;
            }
            by_pid.insert(pid, stat);
            next.extend(kids.iter().filter(|kid| !by_pid.contains_key(kid)));
        }
        Ok(ProcessTable {
            by_pid,
            environ: RefCell::default(),
        })
    }

    /// A table built from already parsed entries (for tests of the walk).
    #[must_use]
    pub fn from_stats(stats: impl IntoIterator<Item = Stat>) -> ProcessTable {
        ProcessTable {
            by_pid: stats.into_iter().map(|stat| (stat.pid, stat)).collect(),
            environ: RefCell::default(),
        }
    }

    /// Every process read, in no particular order.
    pub fn processes(&self) -> impl Iterator<Item = &Stat> {
        self.by_pid.values()
    }

    /// The entry for `pid`, if it was seen.
    #[must_use]
    pub fn get(&self, pid: i32) -> Option<&Stat> {
        self.by_pid.get(&pid)
    }

    /// Whether the environment of `pid` holds exactly the entry `entry` (`NAME=VALUE`). Read
    /// once per scan; a process that is gone or unreadable holds nothing.
    #[must_use]
    pub fn has_env_entry(&self, pid: i32, entry: &[u8]) -> bool {
        let mut cache = self.environ.borrow_mut();
        cache
            .entry(pid)
            .or_insert_with(|| crate::environ::entries(pid))
            .contains(entry)
    }

    /// The direct children of `parent`.
    #[must_use]
    pub fn children(&self, parent: i32) -> Vec<&Stat> {
        self.by_pid
            .values()
            .filter(|stat| stat.ppid == parent && stat.pid != parent)
            .collect()
    }

    /// Every descendant of `root` (not `root` itself), parents before children, zombies
    /// included (they still need reaping but no signal).
    #[must_use]
    pub fn descendants(&self, root: i32) -> Vec<&Stat> {
        let mut children: HashMap<i32, Vec<&Stat>> = HashMap::new();
        for stat in self.by_pid.values() {
            // PID 0's "children" are init and kthreadd; never walk from there by accident.
            if stat.pid != stat.ppid {
                children.entry(stat.ppid).or_default().push(stat);
            }
        }
        let mut out = Vec::new();
        let mut next = vec![root];
        while let Some(parent) = next.pop() {
            if let Some(kids) = children.get(&parent) {
                for kid in kids {
                    out.push(*kid);
                    next.push(kid.pid);
                }
            }
        }
        out
    }
}

/// Whether this kernel has `/proc/PID/task/TID/children` (`CONFIG_PROC_CHILDREN`); asked once.
fn children_files() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| std::path::Path::new("/proc/thread-self/children").exists())
}

/// Appends to `out` the children of every thread of `pid`, as their children files list them.
/// A thread or process that is gone adds nothing.
fn read_children(pid: i32, out: &mut Vec<i32>) -> io::Result<()> {
    let tasks = match std::fs::read_dir(format!("/proc/{pid}/task")) {
        Ok(tasks) => tasks,
        Err(err) if is_gone(&err) => return Ok(()),
        Err(err) => return Err(err),
    };
    // Read in pages, not through `read_to_end` (which asks `statx` and `lseek` first, for a
    // size that /proc does not know). One read takes the whole list where it fits: the kernel
    // walks the children one by one, and a list read in pieces while it changes may skip one.
    let mut text = Vec::new();
    let mut page = [0u8; 4096];
    for task in tasks {
        let task = match task {
            Ok(task) => task,
            Err(err) if is_gone(&err) => continue,
            Err(err) => return Err(err),
        };
        let mut path = task.path();
        path.push("children");
        let mut file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(err) if is_gone(&err) => continue,
            Err(err) => return Err(err),
        };
        text.clear();
        loop {
            match file.read(&mut page) {
                Ok(0) => break,
                Ok(n) => text.extend_from_slice(&page[..n]),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if is_gone(&err) => break,
                Err(err) => return Err(err),
            }
        }
        out.extend(
            text.split(u8::is_ascii_whitespace)
                .filter_map(|word| std::str::from_utf8(word).ok()?.parse::<i32>().ok()),
        );
    }
    Ok(())
}

/// The deepest a process tree is walked: deeper trees exist in theory, 4096 levels is past any
/// real one and bounds the walk.
const MAX_DEPTH: usize = 4096;

/// Walks from `pid` up through its ancestors and returns the first that `found` accepts
/// (`pid` itself first). The walk ends, with `None`, at `stop` (not offered to `found`), at
/// the top of the tree, or at a process that has exited meanwhile. One walk serves every
/// question of the kind "whose tree is this process in?" (a notify datagram's sender, above
/// all).
pub fn find_ancestor(
    pid: i32,
    stop: i32,
    mut found: impl FnMut(i32) -> bool,
) -> io::Result<Option<i32>> {
    let mut current = pid;
    for _ in 0..MAX_DEPTH {
        if current == stop || current <= 0 {
            return Ok(None);
        }
        if found(current) {
            return Ok(Some(current));
        }
        let Some(stat) = read_stat(current)? else {
            return Ok(None);
        };
        current = stat.ppid;
    }
    Ok(None)
}

/// Whether `pid` is a descendant of `ancestor` (not `ancestor` itself); `false` when `pid`
/// is gone: a process that has exited cannot be placed in a tree any more.
pub fn is_descendant(pid: i32, ancestor: i32) -> io::Result<bool> {
    Ok(pid != ancestor && find_ancestor(pid, 0, |at| at == ancestor)?.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(pid: i32, ppid: i32) -> Stat {
        Stat {
            pid,
            comm: format!("p{pid}"),
            state: 'S',
            ppid,
            pgrp: pid,
            session: 1,
            cpu_ticks: 0,
            start_time: 1000 + pid as u64,
            rss_pages: 0,
        }
    }

    #[test]
    fn walks_every_level_below_the_root_only() {
        let table = ProcessTable::from_stats([
            stat(1, 0),
            stat(10, 1),
            stat(11, 10),
            stat(12, 11),
            stat(13, 10),
            stat(20, 1),
            stat(21, 20),
        ]);
        let mut pids: Vec<_> = table.descendants(10).iter().map(|s| s.pid).collect();
        pids.sort_unstable();
        assert_eq!(pids, vec![11, 12, 13]);
        assert!(table.descendants(12).is_empty());
    }

    #[test]
    fn this_process_descends_from_its_parent_and_not_from_itself() {
        let me = std::process::id() as i32;
        let parent = nix::unistd::getppid().as_raw();
        assert!(is_descendant(me, parent).expect("walk"));
        assert!(!is_descendant(me, me).expect("walk"));
        assert!(!is_descendant(parent, me).expect("walk"));
    }

    #[test]
    fn a_subtree_holds_its_root_and_nothing_above() {
        let me = std::process::id() as i32;
        let table = ProcessTable::subtree(me).expect("read the subtree");
        assert!(table.get(me).is_some());
        assert!(table.get(1).is_none());
        assert!(table.get(nix::unistd::getppid().as_raw()).is_none());
    }

    #[test]
    fn the_subtree_of_a_gone_process_is_empty() {
        // Above any pid_max Linux allows (2^22).
        let table = ProcessTable::subtree(1 << 30).expect("read the subtree");
        assert!(table.by_pid.is_empty());
    }

    #[test]
    fn a_scan_sees_this_process() {
        let table = ProcessTable::scan().expect("scan /proc");
        assert!(table.get(std::process::id() as i32).is_some());
    }
}
