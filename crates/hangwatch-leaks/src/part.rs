//! One part of the tree audited on its own as soon as it is gone, while the rest runs on: a
//! service of `hangwatch up` whose program ended.
//!
//! The crate's rules apply, narrowed to what links an object to the part alone. An object is
//! the part's when:
//!
//! - a `/dev/shm` entry: every process of the tree recorded holding it was of the part, and no
//!   process on the machine holds it now;
//! - a SysV shared memory segment: a process of the part created it, and nobody has it attached;
//! - a socket or lock file: a process of the part held it at a stop, and nobody serves or locks
//!   it now;
//! - an entry of a temporary directory: every process of the tree seen using it was of the
//!   part, nobody uses it now, and it is attributable ([`mod@crate::temp`]).
//!
//! Anything else is left to the whole tree's audit at the end ([`LeakWatch::finish`]): objects
//! held by processes of several parts, objects still held, SysV semaphore sets and message
//! queues (the kernel records no creator for them). That audit leaves out what a part's audit
//! reported, so each object is reported once. Nothing is ever removed here.
//!
//! # Three steps, so that the owner's loop never waits on `/proc`
//!
//! 1. [`LeakWatch::audit_part`] picks the candidates: from the evidence in memory, and one read
//!    of `/proc/sysvipc/shm` (about 6 µs, and 1 µs more per SysV segment on the machine). A
//!    part that the evidence links to nothing (the common case) costs that and no more, and
//!    gets `None`.
//! 2. [`PartAudit::run`] does the rest of the I/O and may run on another thread: the listing of
//!    `/dev/shm` and, only when a candidate is there, the search of every process on the
//!    machine for other holders (tens of milliseconds on a busy machine).
//! 3. [`LeakWatch::reported`] notes what was found as reported, forgets the evidence of
//!    objects that are gone, and returns the report.
//!
//! [`LeakWatch::audit_part`]: crate::LeakWatch::audit_part
//! [`LeakWatch::reported`]: crate::LeakWatch::reported
//! [`LeakWatch::finish`]: crate::LeakWatch::finish

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hangwatch_process::ProcessId;
use hangwatch_protocol::report::{Attribution, LeakedObject, ProcessInfo};

use crate::audit::{
    Baseline, Owners, audit_files, holders_outside, shm_finding, sysv_finding, tree_member,
};
use crate::evidence::{Evidence, HeldFile, ShmSeen};
use crate::procfs::{self, SysvKind, SysvObject};
use crate::reported::Reported;
use crate::shm::{ShmDir, ShmEntry};
use crate::temp::PartTemp;

/// The processes of one part of the tree: a program, the processes of the process group it
/// leads, and the processes its stop found (`setsid` escapees included).
#[derive(Debug, Clone, Default)]
pub struct Part {
    /// PID to start time.
    processes: HashMap<i32, u64>,
    /// The program's process group and the program's start time.
    group: Option<(i32, u64)>,
}

impl Part {
    /// The part of `program`, which leads process group `pgid`: a process seen in that group
    /// that started no earlier than the program is of the part. (Once the group is empty its
    /// ID may be reused, but the part is audited when its tree is gone, before that matters,
    /// and earlier processes of a reused group started before the program.)
    #[must_use]
    pub fn program(program: ProcessId, pgid: i32) -> Part {
        Part {
            processes: HashMap::from([(program.pid, program.start_time)]),
            group: Some((pgid, program.start_time)),
        }
    }

    /// Adds a process known to be of the part, such as one its stop found.
    pub fn add(&mut self, process: &ProcessInfo) {
        self.processes.insert(process.pid, process.start_time);
    }

    /// Whether `process` is of the part.
    #[must_use]
    pub fn has(&self, process: &ProcessInfo) -> bool {
        self.processes.get(&process.pid) == Some(&process.start_time)
            || self
                .group
                .is_some_and(|(pgid, since)| process.pgid == pgid && process.start_time >= since)
    }

    /// Whether `pid`, which made SysV `object`, is of the part. A PID is all the kernel keeps:
    /// what the evidence saw of it decides when it saw anything.
    fn made(&self, pid: i32, object: &SysvObject, evidence: &Evidence) -> bool {
        if !evidence.tree.contains_key(&pid) {
            return self.processes.contains_key(&pid);
        }
        match tree_member(evidence, pid, object) {
            Some(member) => match &member.info {
                Some(info) => self.has(info),
                None => self.processes.contains_key(&pid),
            },
            // Reaped before the object was made: the PID was someone else's by then.
            None => false,
        }
    }
}

/// An object found, by the identity [`Reported`] keeps.
#[derive(Debug, Clone)]
enum Key {
    Shm(OsString, u64),
    Sysv(SysvKind, i32),
    File(PathBuf),
    Temp(PathBuf, u64),
}

/// A SysV segment of the part: the object, the evidence text, its creator.
type SysvCandidate = (SysvObject, String, Option<ProcessInfo>);

/// The candidates of one part's audit, to be judged by [`PartAudit::run`].
#[derive(Debug)]
pub struct PartAudit {
    baseline: Arc<Baseline>,
    shm: ShmDir,
    /// By inode: entries only the part was seen holding.
    candidates: HashMap<u64, ShmSeen>,
    /// Entries with a candidate's inode already reported.
    already: HashSet<(OsString, u64)>,
    sysv: Vec<SysvCandidate>,
    files: Vec<HeldFile>,
    temp: Option<PartTemp>,
    errors: Vec<String>,
    picked: Duration,
}

/// What one part's audit found, to be passed to [`crate::LeakWatch::reported`].
#[derive(Debug)]
pub struct PartFound {
    found: Vec<(Key, LeakedObject)>,
    /// Inodes of candidates no longer in the directory: their evidence can go.
    gone: Vec<u64>,
    /// Temporary entries no longer there: their evidence can go.
    temp_gone: Vec<PathBuf>,
    /// Socket and lock files inside a temporary entry found: reported with it.
    covered: Vec<PathBuf>,
    errors: Vec<String>,
    took: Duration,
}

impl PartFound {
    /// Whether nothing was found.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    /// How long the audit took, both steps.
    #[must_use]
    pub fn took(&self) -> Duration {
        self.took
    }
}

/// Step 1: the part's candidates, or `None` when nothing links any object to it.
pub(crate) fn pick(
    baseline: &Arc<Baseline>,
    evidence: &Evidence,
    reported: &Reported,
    part: &Part,
    temp: Option<PartTemp>,
) -> Option<PartAudit> {
    let started = Instant::now();
    let mut errors = Vec::new();
    let candidates: HashMap<u64, ShmSeen> = evidence
        .shm_seen
        .iter()
        .filter(|(_, seen)| {
            !seen.holders.is_empty() && seen.holders.iter().all(|s| part.has(&s.process))
        })
        .map(|(inode, seen)| (*inode, seen.clone()))
        .collect();
    let files: Vec<HeldFile> = evidence
        .files
        .iter()
        .filter(|held| part.has(&held.sighting.process) && !reported.files.contains(&held.path))
        .cloned()
        .collect();
    let sysv = pick_sysv(baseline, evidence, reported, part, &mut errors);
    // A failed read of /proc/sysvipc/shm is the whole tree's audit's to report.
    if candidates.is_empty() && files.is_empty() && sysv.is_empty() && temp.is_none() {
        return None;
    }
    let already = reported
        .shm
        .iter()
        .filter(|(_, inode)| candidates.contains_key(inode))
        .cloned()
        .collect();
    Some(PartAudit {
        baseline: Arc::clone(baseline),
        shm: evidence.shm_dir().clone(),
        candidates,
        already,
        sysv,
        files,
        temp,
        errors,
        picked: started.elapsed(),
    })
}

/// The new SysV segments a process of the part made, attached by nobody now.
fn pick_sysv(
    baseline: &Baseline,
    evidence: &Evidence,
    reported: &Reported,
    part: &Part,
    errors: &mut Vec<String>,
) -> Vec<SysvCandidate> {
    let kind = SysvKind::SharedMemory;
    let text = match std::fs::read_to_string(kind.proc_file()) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Vec::new(),
        Err(err) => {
            errors.push(format!("read {}: {err}", kind.proc_file()));
            return Vec::new();
        }
    };
    let mut found = Vec::new();
    for object in procfs::parse_sysvipc(kind, &text) {
        if baseline.had_sysv(&object)
            || object.cuid != baseline.uid
            || object.attached.unwrap_or(0) > 0
            || reported.sysv.contains(&(object.kind, object.id))
        {
            continue;
        }
        let Some(pid) = object.cpid.filter(|pid| part.made(*pid, &object, evidence)) else {
            continue;
        };
        let process = tree_member(evidence, pid, &object).and_then(|m| m.info.clone());
        let named = process.as_ref().map_or_else(
            || pid.to_string(),
            |info| format!("{pid} ({})", info.command),
        );
        let text = format!("created by {named} of the program's tree");
        found.push((object, text, process));
    }
    found
}

impl PartAudit {
    /// Step 2: judges the candidates (see the module documentation). Blocking: run it off the
    /// loop that owns the [`crate::LeakWatch`].
    #[must_use]
    pub fn run(self) -> PartFound {
        let started = Instant::now();
        let mut owners = Owners::default();
        let mut errors = self.errors;
        let mut found = Vec::new();
        let mut gone = Vec::new();
        if !self.candidates.is_empty() {
            match self.shm.list() {
                Ok(entries) => {
                    let present: HashSet<u64> = entries.iter().map(|e| e.inode).collect();
                    gone = self
                        .candidates
                        .keys()
                        .filter(|inode| !present.contains(inode))
                        .copied()
                        .collect();
                    let new: Vec<ShmEntry> = entries
                        .into_iter()
                        .filter(|e| {
                            self.candidates.contains_key(&e.inode)
                                && !self.baseline.had_shm(e)
                                && e.uid == self.baseline.uid
                                && !self.already.contains(&(e.name.clone(), e.inode))
                        })
                        .collect();
                    judge_shm(
                        &self.shm,
                        new,
                        &self.candidates,
                        &mut owners,
                        &mut found,
                        &mut errors,
                    );
                }
                Err(err) => errors.push(format!("list {}: {err}", self.shm.path.display())),
            }
        }
        for (object, text, process) in self.sysv {
            let finding = sysv_finding(
                &object,
                Attribution::Attributable,
                text,
                process,
                &mut owners,
            );
            found.push((Key::Sysv(object.kind, object.id), finding.object));
        }
        if !self.files.is_empty() {
            let files: Vec<&HeldFile> = self.files.iter().collect();
            let mut findings = Vec::new();
            audit_files(
                &self.baseline,
                &files,
                &mut owners,
                &mut findings,
                &mut errors,
            );
            for finding in findings {
                let path = self
                    .files
                    .iter()
                    .find(|held| held.path.display().to_string() == finding.object.name)
                    .map_or_else(|| PathBuf::from(&finding.object.name), |h| h.path.clone());
                found.push((Key::File(path), finding.object));
            }
        }
        let mut temp_gone = Vec::new();
        let mut covered = Vec::new();
        if let Some(temp) = self.temp {
            let (temp_found, gone) = temp.run(&mut owners, &mut errors);
            // A socket or lock file inside an entry found is listed once, as the entry; it is
            // still noted as reported, so that no later audit lists it.
            found.retain(|(key, _)| match key {
                Key::File(path) if crate::temp::covers(&temp_found, path) => {
                    covered.push(path.clone());
                    false
                }
                _ => true,
            });
            found.extend(
                temp_found
                    .into_iter()
                    .map(|((path, inode), object)| (Key::Temp(path, inode), object)),
            );
            temp_gone = gone;
        }
        found.sort_by(|(_, a), (_, b)| {
            (a.attribution, a.kind, &a.name).cmp(&(b.attribution, b.kind, &b.name))
        });
        PartFound {
            found,
            gone,
            temp_gone,
            covered,
            errors,
            took: self.picked + started.elapsed(),
        }
    }
}

/// The `new` entries of the candidates that nobody holds now. One still held (by another part,
/// or outside the tree) has not been left behind yet: the whole tree's audit judges it.
fn judge_shm(
    shm: &ShmDir,
    new: Vec<ShmEntry>,
    candidates: &HashMap<u64, ShmSeen>,
    owners: &mut Owners,
    found: &mut Vec<(Key, LeakedObject)>,
    errors: &mut Vec<String>,
) {
    if new.is_empty() {
        return;
    }
    let inodes: HashSet<u64> = new.iter().map(|e| e.inode).collect();
    let outside = match holders_outside(shm, &inodes) {
        Ok(outside) => outside,
        Err(err) => {
            errors.push(format!("look for other holders of leaked objects: {err}"));
            return;
        }
    };
    for entry in new {
        let Some(seen) = candidates.get(&entry.inode) else {
            continue;
        };
        if outside.held.contains_key(&entry.inode) {
            continue;
        }
        let key = Key::Shm(entry.name.clone(), entry.inode);
        let finding = shm_finding(shm, entry, seen, None, false, owners);
        found.push((key, finding.object));
    }
}

/// Step 3: notes `found` as reported in `reported` and forgets evidence that can no longer
/// serve; returns the objects.
pub(crate) fn settle(
    found: PartFound,
    evidence: &mut Evidence,
    reported: &mut Reported,
) -> (Vec<LeakedObject>, Vec<String>, Duration) {
    for inode in &found.gone {
        evidence.shm_seen.remove(inode);
    }
    for path in &found.temp_gone {
        evidence.temp.seen.remove(path);
    }
    for path in found.covered {
        evidence.files.retain(|held| held.path != path);
        reported.files.insert(path);
    }
    let mut objects = Vec::with_capacity(found.found.len());
    for (key, object) in found.found {
        match key {
            Key::Shm(name, inode) => {
                evidence.shm_seen.remove(&inode);
                reported.shm.insert((name, inode));
            }
            Key::Sysv(kind, id) => {
                reported.sysv.insert((kind, id));
            }
            Key::File(path) => {
                evidence.files.retain(|held| held.path != path);
                reported.files.insert(path);
            }
            Key::Temp(path, inode) => {
                evidence.temp.seen.remove(&path);
                reported.temp.insert((path, inode));
            }
        }
        objects.push(object);
    }
    (objects, found.errors, found.took)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(pid: i32, start_time: u64, pgid: i32) -> ProcessInfo {
        ProcessInfo {
            pid,
            start_time,
            ppid: 1,
            pgid,
            command: format!("prog{pid}"),
        }
    }

    #[test]
    fn a_part_is_its_program_its_group_since_the_program_and_what_its_stop_found() {
        let mut part = Part::program(
            ProcessId {
                pid: 100,
                start_time: 50,
            },
            100,
        );
        assert!(part.has(&info(100, 50, 100)));
        // The PID again, later: someone else.
        assert!(!part.has(&info(100, 90, 7)));
        // A child in the group.
        assert!(part.has(&info(101, 51, 100)));
        // A process of an earlier group with the same ID.
        assert!(!part.has(&info(102, 10, 100)));
        // An escapee, found by the stop.
        let escapee = info(103, 60, 103);
        assert!(!part.has(&escapee));
        part.add(&escapee);
        assert!(part.has(&escapee));
        assert!(!part.has(&info(103, 61, 103)));
    }
}
