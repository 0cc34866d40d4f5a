//! The snapshot before the run, the audit after it, and the cleaning.
//!
//! The rules that decide between attributable, suspected and unattributed are in the crate
//! documentation; [`audit`] applies them, in this order: the shared memory directory, SysV IPC,
//! then the socket and lock files the tree held at a stop.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::time::{Duration, Instant, SystemTime};

use hangwatch_process::tree::ProcessTable;
use hangwatch_protocol::report::{
    Attribution, LeakAction, LeakKind, LeakPolicy, LeakReport, LeakedObject, ProcessInfo,
};

use crate::evidence::{
    Evidence, HeldFile, Hold, Moment, ShmSeen, Sighting, TreeMember, read_fds, read_mapped,
};
use crate::procfs::{self, Device, SysvKind, SysvObject};
use crate::reported::Reported;
use crate::shm::{ShmDir, ShmEntry};

/// What existed before the program started: never attributed to it, never touched.
#[derive(Debug, Clone)]
pub struct Baseline {
    /// Whose objects are audited: the program's user (hangwatch's effective user ID, which
    /// the program inherits).
    pub uid: u32,
    /// When the snapshot was taken.
    pub taken_at: SystemTime,
    /// `/dev/shm` entries by name and inode: a name reused by a new object is a new object.
    shm: HashSet<(OsString, u64)>,
    sysv: HashSet<(SysvKind, i32)>,
    /// What could not be read.
    pub errors: Vec<String>,
    /// How long the snapshot took.
    pub took: Duration,
}

impl Baseline {
    /// Takes the snapshot of `shm` and SysV IPC, for objects of user `uid`.
    #[must_use]
    pub fn take(shm: &ShmDir, uid: u32) -> Baseline {
        let started = Instant::now();
        let taken_at = SystemTime::now();
        let mut errors = Vec::new();
        let shm_entries = match shm.list() {
            Ok(entries) => entries
                .into_iter()
                .map(|entry| (entry.name, entry.inode))
                .collect(),
            Err(err) => {
                errors.push(format!("list {}: {err}", shm.path.display()));
                HashSet::new()
            }
        };
        let sysv = read_sysv(&mut errors)
            .into_iter()
            .map(|object| (object.kind, object.id))
            .collect();
        Baseline {
            uid,
            taken_at,
            shm: shm_entries,
            sysv,
            errors,
            took: started.elapsed(),
        }
    }

    /// Whether this `/dev/shm` entry existed before the run.
    #[must_use]
    pub fn had_shm(&self, entry: &ShmEntry) -> bool {
        self.shm.contains(&(entry.name.clone(), entry.inode))
    }

    /// Whether this SysV object existed before the run.
    #[must_use]
    pub fn had_sysv(&self, object: &SysvObject) -> bool {
        self.sysv.contains(&(object.kind, object.id))
    }
}

/// Reads the three `/proc/sysvipc` files; a kernel without SysV IPC has none, which is no error.
pub(crate) fn read_sysv(errors: &mut Vec<String>) -> Vec<SysvObject> {
    let mut objects = Vec::new();
    for kind in SysvKind::ALL {
        match std::fs::read_to_string(kind.proc_file()) {
            Ok(text) => objects.extend(procfs::parse_sysvipc(kind, &text)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => errors.push(format!("read {}: {err}", kind.proc_file())),
        }
    }
    objects
}

/// How to remove an attributable object.
#[derive(Debug, Clone)]
pub(crate) enum Removal {
    Shm(ShmEntry),
    SysvShm(i32),
}

/// One object found, with how to remove it if it is attributable.
#[derive(Debug)]
pub(crate) struct Finding {
    pub(crate) object: LeakedObject,
    pub(crate) removal: Option<Removal>,
}

/// Audits what the run left, after its tree is gone; cleans when `policy` says so.
/// `leftovers` is how many processes outlived the program (they count as a leak).
#[must_use]
pub fn audit(
    baseline: &Baseline,
    evidence: &Evidence,
    policy: LeakPolicy,
    leftovers: usize,
) -> LeakReport {
    audit_except(baseline, evidence, policy, leftovers, &Reported::default())
}

/// [`audit`], leaving out the objects already reported with a part of the tree.
pub(crate) fn audit_except(
    baseline: &Baseline,
    evidence: &Evidence,
    policy: LeakPolicy,
    leftovers: usize,
    reported: &Reported,
) -> LeakReport {
    let started = Instant::now();
    let mut errors = baseline.errors.clone();
    if let Some(why) = &evidence.creations_unobserved {
        errors.push(format!(
            "watch {} for new objects: {why}; attribution relies on the looks at stops",
            evidence.shm_dir().path.display()
        ));
    }
    let mut owners = Owners::default();
    let mut unattributed = 0u64;
    let mut findings = Vec::new();

    audit_shm(
        baseline,
        evidence,
        reported,
        &mut owners,
        &mut findings,
        &mut unattributed,
        &mut errors,
    );
    audit_sysv(
        baseline,
        evidence,
        reported,
        &mut owners,
        &mut findings,
        &mut unattributed,
        &mut errors,
    );
    let files: Vec<&HeldFile> = evidence
        .files
        .iter()
        .filter(|held| !reported.files.contains(&held.path))
        .collect();
    audit_files(baseline, &files, &mut owners, &mut findings, &mut errors);

    findings.sort_by(|a, b| {
        (a.object.attribution, a.object.kind, &a.object.name).cmp(&(
            b.object.attribution,
            b.object.kind,
            &b.object.name,
        ))
    });
    if policy == LeakPolicy::Clean {
        for finding in &mut findings {
            if let Some(removal) = &finding.removal {
                let (action, error) = remove(evidence.shm_dir(), removal);
                finding.object.action = action;
                finding.object.error = error;
            }
        }
    }
    let attributable = findings
        .iter()
        .any(|f| f.object.attribution == Attribution::Attributable);
    LeakReport {
        policy,
        leaked: leftovers > 0 || attributable,
        objects: findings.into_iter().map(|f| f.object).collect(),
        unattributed,
        scans: evidence.looks,
        scan_ms: millis(evidence.look_time),
        baseline_ms: millis(baseline.took),
        audit_ms: millis(started.elapsed()),
        errors,
    }
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// `/dev/shm`: new entries of the program's user, judged by what the looks saw.
fn audit_shm(
    baseline: &Baseline,
    evidence: &Evidence,
    reported: &Reported,
    owners: &mut Owners,
    findings: &mut Vec<Finding>,
    unattributed: &mut u64,
    errors: &mut Vec<String>,
) {
    let shm = evidence.shm_dir();
    let entries = match shm.list() {
        Ok(entries) => entries,
        Err(err) => {
            errors.push(format!("list {}: {err}", shm.path.display()));
            return;
        }
    };
    let mut candidates: Vec<(ShmEntry, &ShmSeen)> = Vec::new();
    for entry in entries {
        if baseline.had_shm(&entry) || entry.uid != baseline.uid || reported.has_shm(&entry) {
            continue;
        }
        match evidence.shm_seen.get(&entry.inode) {
            Some(seen) if !seen.holders.is_empty() => candidates.push((entry, seen)),
            _ => *unattributed += 1,
        }
    }
    if candidates.is_empty() {
        return;
    }
    let inodes: HashSet<u64> = candidates.iter().map(|(entry, _)| entry.inode).collect();
    let outside = match holders_outside(shm, &inodes) {
        Ok(outside) => outside,
        Err(err) => {
            errors.push(format!("look for other holders of leaked objects: {err}"));
            // Nobody can be shown not to hold them: none is removed.
            Outside {
                held: HashMap::new(),
                unknown: true,
            }
        }
    };
    for (entry, seen) in candidates {
        let held = outside.held.get(&entry.inode);
        findings.push(shm_finding(shm, entry, seen, held, outside.unknown, owners));
    }
}

/// The finding on one new `/dev/shm` entry that the tree was seen holding; `held` names a
/// process outside the tree that holds it now, `unknown` says whether any might.
pub(crate) fn shm_finding(
    shm: &ShmDir,
    entry: ShmEntry,
    seen: &ShmSeen,
    held: Option<&(ProcessInfo, Hold)>,
    unknown: bool,
    owners: &mut Owners,
) -> Finding {
    // The holder seen right after creation names the creator best.
    let sighting = seen
        .holders
        .iter()
        .find(|s| s.moment == Moment::Creation)
        .or(seen.holders.first());
    let seen_text = sighting.map_or_else(|| "seen held".to_owned(), describe_sighting);
    let (attribution, evidence_text) = if let Some((process, hold)) = held {
        (
            Attribution::Suspected,
            format!(
                "{seen_text}; still {} by {} ({}), outside the program's tree",
                hold.verb(),
                process.pid,
                process.command
            ),
        )
    } else if unknown {
        (
            Attribution::Suspected,
            format!("{seen_text}; whether another process holds it now is unknown"),
        )
    } else if seen.held_at_creation == Some(false) {
        (
            Attribution::Suspected,
            format!(
                "{seen_text}, but no process of the program held it when it was created: \
                 another program may have made it"
            ),
        )
    } else {
        (Attribution::Attributable, seen_text)
    };
    let path = shm.path.join(&entry.name);
    Finding {
        object: LeakedObject {
            kind: entry.kind(),
            name: path.display().to_string(),
            size: Some(entry.size),
            owner_uid: entry.uid,
            owner: owners.name(entry.uid),
            attribution,
            evidence: evidence_text,
            process: sighting.map(|s| s.process.clone()),
            action: LeakAction::Reported,
            error: None,
        },
        removal: (attribution == Attribution::Attributable).then_some(Removal::Shm(entry)),
    }
}

/// "mapped by 1234 (python3 job.py) right after it was created".
pub(crate) fn describe_sighting(sighting: &Sighting) -> String {
    let when = match sighting.moment {
        Moment::Creation => "right after it was created",
        Moment::Stop => "when the stop began",
    };
    format!(
        "{} by {} ({}) {when}",
        sighting.hold.verb(),
        sighting.process.pid,
        sighting.process.command
    )
}

/// Processes outside the tree that hold some of the candidates now.
pub(crate) struct Outside {
    pub(crate) held: HashMap<u64, (ProcessInfo, Hold)>,
    /// The search failed: any candidate may be held.
    pub(crate) unknown: bool,
}

/// Looks through every process on the machine (the tree is gone by now) for `inodes`: the
/// cost is paid only when something may have leaked. A process hangwatch may not inspect
/// (another user's, when hangwatch is not root; a non-dumpable one) is taken to hold nothing:
/// see the crate's caveats.
pub(crate) fn holders_outside(shm: &ShmDir, inodes: &HashSet<u64>) -> io::Result<Outside> {
    let mut outside = Outside {
        held: HashMap::new(),
        unknown: false,
    };
    for stat in ProcessTable::scan()?.processes() {
        let pid = stat.pid;
        if stat.is_zombie() {
            continue;
        }
        let Ok(mapped) = read_mapped(pid, shm.device) else {
            continue;
        };
        let mut found: Vec<(u64, Hold)> = mapped
            .inodes
            .into_iter()
            .filter(|inode| inodes.contains(inode))
            .map(|inode| (inode, Hold::Mapped))
            .collect();
        found.extend(
            read_fds(pid, shm, false)?
                .shm
                .into_iter()
                .filter(|inode| inodes.contains(inode))
                .map(|inode| (inode, Hold::Open)),
        );
        for (inode, hold) in found {
            outside
                .held
                .entry(inode)
                .or_insert_with(|| (stat.info(), hold));
        }
    }
    Ok(outside)
}

/// SysV IPC: new objects of the program's user, judged by creator and attachments.
fn audit_sysv(
    baseline: &Baseline,
    evidence: &Evidence,
    reported: &Reported,
    owners: &mut Owners,
    findings: &mut Vec<Finding>,
    unattributed: &mut u64,
    errors: &mut Vec<String>,
) {
    for object in read_sysv(errors) {
        if baseline.had_sysv(&object)
            || object.cuid != baseline.uid
            || reported.sysv.contains(&(object.kind, object.id))
        {
            continue;
        }
        let Some((attribution, text, process)) = judge_sysv(&object, evidence) else {
            *unattributed += 1;
            continue;
        };
        findings.push(sysv_finding(&object, attribution, text, process, owners));
    }
}

/// The finding on one SysV object.
pub(crate) fn sysv_finding(
    object: &SysvObject,
    attribution: Attribution,
    text: String,
    process: Option<ProcessInfo>,
    owners: &mut Owners,
) -> Finding {
    {
        let kind = match object.kind {
            SysvKind::SharedMemory => LeakKind::SysvSharedMemory,
            SysvKind::Semaphore => LeakKind::SysvSemaphore,
            SysvKind::MessageQueue => LeakKind::SysvMessageQueue,
        };
        Finding {
            object: LeakedObject {
                kind,
                name: object.name(),
                size: match object.kind {
                    SysvKind::Semaphore => None,
                    _ => Some(object.size),
                },
                owner_uid: object.uid,
                owner: owners.name(object.uid),
                attribution,
                evidence: text,
                process,
                action: LeakAction::Reported,
                error: None,
            },
            removal: (attribution == Attribution::Attributable)
                .then_some(Removal::SysvShm(object.id)),
        }
    }
}

/// `pid` as a member of the tree that may have made or used `object`: `None` when the tree
/// never had that PID, or had it only before the object was made (a PID reaped before that
/// was reused by someone else since).
pub(crate) fn tree_member<'a>(
    evidence: &'a Evidence,
    pid: i32,
    object: &SysvObject,
) -> Option<&'a TreeMember> {
    evidence.tree.get(&pid).filter(|member| {
        member.gone_at.is_none_or(|gone| {
            let gone = gone
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            i64::try_from(gone).unwrap_or(i64::MAX).saturating_add(1) >= object.ctime
        })
    })
}

/// The verdict on one new SysV object of the program's user; `None` when nothing links it to
/// the program.
fn judge_sysv(
    object: &SysvObject,
    evidence: &Evidence,
) -> Option<(Attribution, String, Option<ProcessInfo>)> {
    let member = |pid: i32| tree_member(evidence, pid, object);
    let named = |pid: i32| match member(pid).and_then(|m| m.info.as_ref()) {
        Some(info) => format!("{pid} ({})", info.command),
        None => pid.to_string(),
    };
    match object.kind {
        SysvKind::SharedMemory => {
            let creator = object.cpid.filter(|pid| member(*pid).is_some());
            let attached_by = evidence.sysv_attached.get(&object.id);
            let process = creator
                .and_then(|pid| member(pid).and_then(|m| m.info.clone()))
                .or_else(|| attached_by.map(|s| s.process.clone()));
            let attached_now = object.attached.unwrap_or(0);
            match (creator, attached_by) {
                (None, None) => None,
                (Some(pid), _) if attached_now == 0 => Some((
                    Attribution::Attributable,
                    format!("created by {} of the program's tree", named(pid)),
                    process,
                )),
                (Some(pid), _) => Some((
                    Attribution::Suspected,
                    format!(
                        "created by {} of the program's tree; still attached by {attached_now} \
                         process(es)",
                        named(pid)
                    ),
                    process,
                )),
                (None, Some(sighting)) => Some((
                    Attribution::Suspected,
                    format!(
                        "{}; created by {}, outside the program's tree",
                        describe_sighting(sighting),
                        object
                            .cpid
                            .map_or_else(|| "?".to_owned(), |p| p.to_string())
                    ),
                    process,
                )),
            }
        }
        SysvKind::Semaphore => Some((
            Attribution::Suspected,
            "created during the run by the program's user; the kernel records no creator for \
             SysV semaphore sets"
                .to_owned(),
            None,
        )),
        SysvKind::MessageQueue => {
            let (sender, receiver) = object.last_users.unwrap_or((0, 0));
            let user = [sender, receiver]
                .into_iter()
                .find(|pid| *pid > 0 && member(*pid).is_some());
            match user {
                Some(pid) => Some((
                    Attribution::Suspected,
                    format!(
                        "last used by {} of the program's tree; the kernel records no creator \
                         for message queues",
                        named(pid)
                    ),
                    member(pid).and_then(|m| m.info.clone()),
                )),
                None if sender == 0 && receiver == 0 => Some((
                    Attribution::Suspected,
                    "created during the run by the program's user and never used; the kernel \
                     records no creator for message queues"
                        .to_owned(),
                    None,
                )),
                None => None,
            }
        }
    }
}

/// Socket and lock files the tree held at a stop, made during the run, that nobody serves or
/// locks now. Report only: lock files are often meant to stay.
pub(crate) fn audit_files(
    baseline: &Baseline,
    files: &[&HeldFile],
    owners: &mut Owners,
    findings: &mut Vec<Finding>,
    errors: &mut Vec<String>,
) {
    let mut served: Option<HashSet<String>> = None;
    let mut locked: Option<HashSet<(Device, u64)>> = None;
    for held in files {
        let Ok(meta) = std::fs::symlink_metadata(&held.path) else {
            continue;
        };
        let made = meta
            .created()
            .or_else(|_| meta.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        if made < baseline.taken_at {
            continue;
        }
        let (kind, still_used, now) = match held.sighting.hold {
            Hold::Serving => {
                if !meta.file_type().is_socket() {
                    continue;
                }
                let served = served.get_or_insert_with(|| serving_paths(errors));
                (
                    LeakKind::UnixSocket,
                    served.contains(&held.path.display().to_string()),
                    "nobody listens on it now",
                )
            }
            _ => {
                let same = held
                    .file
                    .is_some_and(|file| file == (Device::from_dev_t(meta.dev()), meta.ino()));
                if !same {
                    continue;
                }
                let locked = locked.get_or_insert_with(|| locked_files(errors));
                (
                    LeakKind::LockFile,
                    held.file.is_some_and(|file| locked.contains(&file)),
                    "nobody holds a lock on it now",
                )
            }
        };
        if still_used {
            continue;
        }
        findings.push(file_finding(held, kind, &meta, now, owners));
    }
}

fn file_finding(
    held: &HeldFile,
    kind: LeakKind,
    meta: &std::fs::Metadata,
    now: &str,
    owners: &mut Owners,
) -> Finding {
    Finding {
        object: LeakedObject {
            kind,
            name: held.path.display().to_string(),
            size: (kind == LeakKind::LockFile).then_some(meta.size()),
            owner_uid: meta.uid(),
            owner: owners.name(meta.uid()),
            attribution: Attribution::Suspected,
            evidence: format!("{}; {now}", describe_sighting(&held.sighting)),
            process: Some(held.sighting.process.clone()),
            action: LeakAction::Reported,
            error: None,
        },
        removal: None,
    }
}

/// Paths that a socket serves now (absolute ones; a relative one cannot be placed).
fn serving_paths(errors: &mut Vec<String>) -> HashSet<String> {
    match std::fs::read_to_string("/proc/net/unix") {
        Ok(text) => procfs::parse_net_unix(&text)
            .into_iter()
            .filter(|socket| socket.serving)
            .map(|socket| socket.path)
            .collect(),
        Err(err) => {
            errors.push(format!("read /proc/net/unix: {err}"));
            HashSet::new()
        }
    }
}

/// Files locked now.
fn locked_files(errors: &mut Vec<String>) -> HashSet<(Device, u64)> {
    match std::fs::read_to_string("/proc/locks") {
        Ok(text) => procfs::parse_locks(&text)
            .into_iter()
            .map(|lock| (lock.device, lock.inode))
            .collect(),
        Err(err) => {
            errors.push(format!("read /proc/locks: {err}"));
            HashSet::new()
        }
    }
}

/// Removes one attributable object, checking first that its name still names it.
fn remove(shm: &ShmDir, removal: &Removal) -> (LeakAction, Option<String>) {
    match removal {
        Removal::Shm(entry) => {
            // Same name, same inode: a new object that took the name since is not ours.
            match shm.entry(&entry.name) {
                Ok(Some(now)) if now.inode == entry.inode => {}
                Ok(_) => return (LeakAction::AlreadyGone, None),
                Err(err) => return (LeakAction::RemoveFailed, Some(err.to_string())),
            }
            match std::fs::remove_file(shm.path.join(&entry.name)) {
                Ok(()) => (LeakAction::Removed, None),
                Err(err) if err.kind() == io::ErrorKind::NotFound => {
                    (LeakAction::AlreadyGone, None)
                }
                Err(err) => (LeakAction::RemoveFailed, Some(err.to_string())),
            }
        }
        Removal::SysvShm(id) => match hangwatch_process::ipc::remove_sysv_shm(*id) {
            Ok(()) => (LeakAction::Removed, None),
            Err(err)
                if matches!(
                    err.raw_os_error(),
                    Some(nix::libc::EINVAL | nix::libc::EIDRM)
                ) =>
            {
                (LeakAction::AlreadyGone, None)
            }
            Err(err) => (LeakAction::RemoveFailed, Some(err.to_string())),
        },
    }
}

/// User names by ID, looked up once each.
#[derive(Default)]
pub(crate) struct Owners {
    names: HashMap<u32, Option<String>>,
}

impl Owners {
    pub(crate) fn name(&mut self, uid: u32) -> Option<String> {
        self.names
            .entry(uid)
            .or_insert_with(|| {
                nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
                    .ok()
                    .flatten()
                    .map(|user| user.name)
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(pid: i32) -> ProcessInfo {
        ProcessInfo {
            pid,
            start_time: 1,
            ppid: 1,
            pgid: pid,
            command: format!("prog{pid}"),
        }
    }

    fn segment(kind: SysvKind) -> SysvObject {
        SysvObject {
            kind,
            key: 0,
            id: 7,
            size: 4096,
            uid: 1000,
            cuid: 1000,
            cpid: (kind == SysvKind::SharedMemory).then_some(42),
            attached: (kind == SysvKind::SharedMemory).then_some(0),
            last_users: (kind == SysvKind::MessageQueue).then_some((0, 0)),
            ctime: 1_767_225_600,
        }
    }

    fn evidence_with(pid: i32, gone_at: Option<SystemTime>) -> Evidence {
        let shm = ShmDir::open(std::path::Path::new("/nonexistent/hangwatch-shm")).expect("open");
        let mut evidence = Evidence::new(1, shm);
        evidence.tree.insert(
            pid,
            TreeMember {
                info: Some(info(pid)),
                gone_at,
            },
        );
        evidence
    }

    #[test]
    fn a_segment_made_by_the_tree_and_attached_by_nobody_is_attributable() {
        let evidence = evidence_with(42, None);
        let (attribution, text, process) =
            judge_sysv(&segment(SysvKind::SharedMemory), &evidence).expect("linked");
        assert_eq!(attribution, Attribution::Attributable);
        assert!(text.contains("created by 42 (prog42)"), "{text}");
        assert_eq!(process.map(|p| p.pid), Some(42));
    }

    #[test]
    fn a_segment_still_attached_is_only_suspected() {
        let evidence = evidence_with(42, None);
        let mut object = segment(SysvKind::SharedMemory);
        object.attached = Some(2);
        let (attribution, text, _) = judge_sysv(&object, &evidence).expect("linked");
        assert_eq!(attribution, Attribution::Suspected);
        assert!(text.contains("still attached by 2"), "{text}");
    }

    #[test]
    fn a_segment_of_a_stranger_is_not_listed() {
        let evidence = evidence_with(43, None);
        assert!(judge_sysv(&segment(SysvKind::SharedMemory), &evidence).is_none());
    }

    #[test]
    fn a_creator_pid_reaped_before_the_segment_was_made_is_a_reused_pid() {
        // Reaped at 1000 s after the epoch; the segment dates from 2026.
        let gone = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let evidence = evidence_with(42, Some(gone));
        assert!(judge_sysv(&segment(SysvKind::SharedMemory), &evidence).is_none());
        // Reaped after it was made: the tree's own.
        let gone = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_601);
        let evidence = evidence_with(42, Some(gone));
        assert!(judge_sysv(&segment(SysvKind::SharedMemory), &evidence).is_some());
    }

    #[test]
    fn a_segment_only_attached_by_the_tree_is_suspected() {
        let mut evidence = evidence_with(43, None);
        evidence.sysv_attached.insert(
            7,
            Sighting {
                process: info(43),
                hold: Hold::Attached,
                moment: Moment::Stop,
            },
        );
        let (attribution, text, _) =
            judge_sysv(&segment(SysvKind::SharedMemory), &evidence).expect("linked");
        assert_eq!(attribution, Attribution::Suspected);
        assert!(text.contains("created by 42, outside"), "{text}");
    }

    #[test]
    fn semaphores_and_queues_are_never_attributable() {
        let evidence = evidence_with(42, None);
        let (attribution, _, _) =
            judge_sysv(&segment(SysvKind::Semaphore), &evidence).expect("listed");
        assert_eq!(attribution, Attribution::Suspected);
        let (attribution, _, _) =
            judge_sysv(&segment(SysvKind::MessageQueue), &evidence).expect("listed");
        assert_eq!(attribution, Attribution::Suspected);
        let mut queue = segment(SysvKind::MessageQueue);
        queue.last_users = Some((42, 0));
        let (_, text, process) = judge_sysv(&queue, &evidence).expect("listed");
        assert!(text.contains("last used by 42"), "{text}");
        assert_eq!(process.map(|p| p.pid), Some(42));
        queue.last_users = Some((77, 0));
        assert!(judge_sysv(&queue, &evidence).is_none());
    }
}
