//! Temporary directories: what a program leaves at the top level of `TMPDIR`, `/tmp` and
//! `/var/tmp`.
//!
//! A killed Python program leaves more than `/dev/shm`: `multiprocessing`'s `pymp-*` directory
//! (with the forkserver's or a manager's listener socket in it), the directories of
//! `tempfile.mkdtemp` and `TemporaryDirectory`, the files of `NamedTemporaryFile`, joblib's
//! memmapping folders. Each is one entry at the top level of a temporary directory, so that is
//! what is watched (inotify, as `/dev/shm`) and audited, one entry at a time.
//!
//! # Attribution
//!
//! Linux records no creator for a file. What links an entry to the program is the same as for
//! `/dev/shm`: a process of the tree seen *using* it while alive, at a look after a creation in
//! a watched directory or at a stop: a descriptor open on it or on something inside it (a
//! temporary file being written, a memmapped array: Python's `mmap` keeps a descriptor), its
//! working directory inside it, or a Unix socket it listens on inside it (the forkserver's).
//! The look right after a creation often comes before the program opened anything in a fresh
//! directory; unlike `/dev/shm`, that is no sign that someone else made it, and later looks
//! count as much. An entry is, when it did not exist before the run and belongs to the
//! program's user:
//!
//! - **attributable** (removed by `clean`) when a process of the tree was seen using it, no
//!   process on the machine uses it now, it was born during the run, and, for a directory,
//!   *everything in it* is attributable too: of the program's user, on the same file system
//!   (nothing mounted inside), born during the run (`statx`'s birth time: a file made before
//!   the run and moved in keeps its birth time), at most [`CONTENTS_MAX`] entries;
//! - **suspected** (report only) when the tree was seen using it but one of those checks fails
//!   (the report says which);
//! - **unattributed** (counted only) when nothing links it to the tree: most likely another
//!   program's. An entry that no process of the tree ever held open (a `mkdtemp` directory
//!   left empty, a file written and closed) lands here: that is the price of never deleting on
//!   a guess.
//!
//! The one guess left: an entry that another program made during the run, that the tree then
//! used (worked in, opened a file in) and that nobody uses at the end is taken for the
//! tree's. Its contents must still all be of the user and born during the run to be removed.
//!
//! Removal checks again, just before it, that the name names the same inode and that the
//! contents still pass; a directory is then removed with everything in it (symbolic links are
//! removed, never followed).

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hangwatch_protocol::report::{
    Attribution, LeakAction, LeakKind, LeakPolicy, LeakReport, LeakedObject, ProcessInfo,
};

use crate::audit::{Owners, describe_sighting};
use crate::evidence::{Hold, Moment, Sighting, absolute, is_unreadable};
use crate::procfs;

/// The most entries a directory may hold to be attributable: the check reads every one, and a
/// program's temporary directory that big is worth a look by a person first.
pub const CONTENTS_MAX: usize = 10_000;

/// The most entries followed that no process of the tree was seen using: each costs a
/// comparison at every look, and a busy `/tmp` makes many that are not the program's.
const UNHELD_KEPT: usize = 4096;

/// The kernel stamps birth times from its coarse clock, which lags the one the baseline reads
/// by up to a tick (10 ms at the lowest common `HZ`, 100); a file born this much before the
/// baseline's time still counts as born after it.
const CLOCK_SLACK: Duration = Duration::from_millis(20);

/// The temporary directories of a program started with hangwatch's environment, as Python's
/// `tempfile.gettempdir()` and most programs choose them: `TMPDIR`, `TEMP`, `TMP`, then
/// `/tmp`, `/var/tmp`, `/usr/tmp`. All that exist are watched (a program's helpers may differ
/// in their environment); each directory once, by device and inode.
#[must_use]
pub fn temp_dirs() -> Vec<PathBuf> {
    let from_env = ["TMPDIR", "TEMP", "TMP"]
        .into_iter()
        .filter_map(std::env::var_os)
        .map(PathBuf::from)
        .filter(|path| path.is_absolute());
    let fixed = ["/tmp", "/var/tmp", "/usr/tmp"]
        .into_iter()
        .map(PathBuf::from);
    distinct_dirs(from_env.chain(fixed))
}

/// The existing directories among `paths`, each once (by device and inode), as given.
pub(crate) fn distinct_dirs(paths: impl IntoIterator<Item = PathBuf>) -> Vec<PathBuf> {
    let mut seen = HashSet::new();
    let mut dirs = Vec::new();
    for path in paths {
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() && seen.insert((meta.dev(), meta.ino())) {
            dirs.push(path);
        }
    }
    dirs
}

/// One top-level entry of a temporary directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TempEntry {
    /// Its path: the temporary directory joined with its name.
    pub path: PathBuf,
    /// Its inode: with the path, what tells it from a later entry of the same name.
    pub inode: u64,
    /// Its owner.
    pub uid: u32,
    /// Whether it is a directory.
    pub is_dir: bool,
}

impl TempEntry {
    fn from_meta(path: PathBuf, meta: &std::fs::Metadata) -> Option<TempEntry> {
        let kind = meta.file_type();
        // A symbolic link, a FIFO or a device made in /tmp is no temporary file of interest.
        (kind.is_dir() || kind.is_file() || kind.is_socket()).then(|| TempEntry {
            path,
            inode: meta.ino(),
            uid: meta.uid(),
            is_dir: kind.is_dir(),
        })
    }

    /// `path` now, if it is an entry of interest.
    pub fn at(path: PathBuf) -> io::Result<Option<TempEntry>> {
        match std::fs::symlink_metadata(&path) {
            Ok(meta) => Ok(TempEntry::from_meta(path, &meta)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }
}

/// Every entry of interest at the top level of `dir`; entries removed meanwhile are skipped.
pub fn list(dir: &Path) -> io::Result<Vec<TempEntry>> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        match entry.metadata() {
            Ok(meta) => entries.extend(TempEntry::from_meta(entry.path(), &meta)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
    }
    Ok(entries)
}

/// The temporary directories' entries before the run: never attributed, never touched.
#[derive(Debug, Default)]
pub struct TempBaseline {
    /// The directories watched.
    pub dirs: Vec<PathBuf>,
    /// Whose entries are audited.
    pub uid: u32,
    /// When the listing began.
    pub taken_at: Option<SystemTime>,
    entries: HashSet<(PathBuf, u64)>,
    /// What could not be listed.
    pub errors: Vec<String>,
}

impl TempBaseline {
    /// Lists `dirs`, for entries of user `uid`.
    #[must_use]
    pub fn take(dirs: Vec<PathBuf>, uid: u32) -> TempBaseline {
        let taken_at = SystemTime::now();
        let mut entries = HashSet::new();
        let mut errors = Vec::new();
        for dir in &dirs {
            match list(dir) {
                Ok(listed) => entries.extend(listed.into_iter().map(|e| (e.path, e.inode))),
                Err(err) => errors.push(format!("list {}: {err}", dir.display())),
            }
        }
        TempBaseline {
            dirs,
            uid,
            taken_at: Some(taken_at),
            entries,
            errors,
        }
    }

    /// Whether this entry existed before the run.
    #[must_use]
    pub fn had(&self, entry: &TempEntry) -> bool {
        self.entries.contains(&(entry.path.clone(), entry.inode))
    }
}

/// What was seen of one new top-level entry.
#[derive(Debug, Clone)]
pub struct TempSeen {
    /// Its inode when it was noticed.
    pub inode: u64,
    /// The processes of the tree seen using it (the first few).
    pub holders: Vec<Sighting>,
}

/// The evidence about temporary directories: new entries noticed, and who used them.
#[derive(Debug, Default)]
pub struct TempEvidence {
    /// The directories watched.
    pub dirs: Vec<PathBuf>,
    /// New entries of the program's user, by path.
    pub seen: HashMap<PathBuf, TempSeen>,
    /// Why creations could not all be observed, if they could not.
    pub unobserved: Option<String>,
}

/// The most holders kept per entry.
const HOLDERS_KEPT: usize = 4;

impl TempEvidence {
    /// Notes a new entry noticed by the watch.
    pub fn created(&mut self, entry: &TempEntry) {
        self.seen
            .entry(entry.path.clone())
            .and_modify(|seen| {
                if seen.inode != entry.inode {
                    *seen = TempSeen {
                        inode: entry.inode,
                        holders: Vec::new(),
                    };
                }
            })
            .or_insert_with(|| TempSeen {
                inode: entry.inode,
                holders: Vec::new(),
            });
        if self.seen.len() > UNHELD_KEPT {
            self.drop_unheld();
        }
    }

    /// Forgets entries gone, then unheld ones, when too many are followed.
    fn drop_unheld(&mut self) {
        self.forget_gone();
        let mut unheld = self.seen.values().filter(|s| s.holders.is_empty()).count();
        if unheld <= UNHELD_KEPT {
            return;
        }
        self.seen.retain(|_, seen| {
            if seen.holders.is_empty() && unheld > UNHELD_KEPT / 2 {
                unheld -= 1;
                false
            } else {
                true
            }
        });
        self.unobserved.get_or_insert_with(|| {
            format!("more than {UNHELD_KEPT} new entries that the program did not use")
        });
    }

    /// Forgets entries whose path no longer names the inode noticed.
    pub fn forget_gone(&mut self) {
        self.seen.retain(|path, seen| {
            std::fs::symlink_metadata(path).is_ok_and(|meta| meta.ino() == seen.inode)
        });
    }

    /// The followed entry that `path` is, or is inside of.
    fn top_of(&self, path: &Path) -> Option<&Path> {
        for dir in &self.dirs {
            let Ok(rest) = path.strip_prefix(dir) else {
                continue;
            };
            let Some(Component::Normal(first)) = rest.components().next() else {
                continue;
            };
            let top = dir.join(first);
            if let Some((key, _)) = self.seen.get_key_value(&top) {
                return Some(key.as_path());
            }
        }
        None
    }

    /// Records the uses that one look saw: `(pid, path, how)`, paths absolute.
    pub(crate) fn saw(
        &mut self,
        uses: &[(i32, PathBuf, Hold)],
        moment: Moment,
        info: &mut impl FnMut(i32) -> Option<ProcessInfo>,
    ) {
        for (pid, path, hold) in uses {
            let Some(top) = self.top_of(path).map(Path::to_path_buf) else {
                continue;
            };
            let Some(seen) = self.seen.get_mut(&top) else {
                continue;
            };
            if seen.holders.len() >= HOLDERS_KEPT
                || seen.holders.iter().any(|s| s.process.pid == *pid)
            {
                continue;
            }
            if let Some(process) = info(*pid) {
                seen.holders.push(Sighting {
                    process,
                    hold: *hold,
                    moment,
                });
            }
        }
    }
}

/// The paths one process uses: descriptors open on absolute paths, its working directory, and
/// the inodes of its sockets.
#[derive(Debug, Default)]
pub(crate) struct Uses {
    pub paths: Vec<(PathBuf, Hold)>,
    pub sockets: Vec<u64>,
}

/// Reads what `pid` uses. A process gone or not ours to inspect uses nothing we can see.
pub(crate) fn read_uses(pid: i32) -> io::Result<Uses> {
    let mut uses = Uses::default();
    let dir = match std::fs::read_dir(format!("/proc/{pid}/fd")) {
        Ok(dir) => dir,
        Err(err) if is_unreadable(&err) => return Ok(uses),
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
                uses.sockets.push(inode);
            }
        } else if target.is_absolute() {
            uses.paths.push((target, Hold::Open));
        }
    }
    if let Ok(cwd) = std::fs::read_link(format!("/proc/{pid}/cwd")) {
        uses.paths.push((cwd, Hold::WorkingDirectory));
    }
    Ok(uses)
}

/// The Unix sockets that serve on a path now, by inode (paths as their servers named them).
pub(crate) fn serving_sockets() -> io::Result<HashMap<u64, String>> {
    let text = std::fs::read_to_string("/proc/net/unix")?;
    Ok(procfs::parse_net_unix(&text)
        .into_iter()
        .filter(|socket| socket.serving)
        .map(|socket| (socket.inode, socket.path))
        .collect())
}

/// What `pids` use: paths, and the paths of the sockets they serve (read from `/proc/net/unix`
/// only when one of them has a socket).
pub(crate) fn uses_of(pids: &[i32]) -> io::Result<Vec<(i32, PathBuf, Hold)>> {
    let mut all = Vec::new();
    let mut sockets = Vec::new();
    for &pid in pids {
        let uses = read_uses(pid)?;
        all.extend(uses.paths.into_iter().map(|(path, hold)| (pid, path, hold)));
        sockets.extend(uses.sockets.into_iter().map(|inode| (pid, inode)));
    }
    if !sockets.is_empty() {
        let serving = match serving_sockets() {
            Ok(serving) => serving,
            Err(err) if is_unreadable(&err) => HashMap::new(),
            Err(err) => return Err(err),
        };
        for (pid, inode) in sockets {
            if let Some(path) = serving.get(&inode) {
                all.push((pid, absolute(pid, Path::new(path)), Hold::Serving));
            }
        }
    }
    Ok(all)
}

/// Every process on the machine (outside the tree by the time of an audit) that uses one of
/// `tops` now, the first found for each.
fn users_now(tops: &HashSet<PathBuf>) -> io::Result<HashMap<PathBuf, (ProcessInfo, Hold)>> {
    let mut found = HashMap::new();
    let pids = hangwatch_process::tree::pids()?;
    for (pid, path, hold) in uses_of(&pids)? {
        let Some(top) = tops.iter().find(|top| path.starts_with(top)) else {
            continue;
        };
        if !found.contains_key(top)
            && let Ok(Some(stat)) = hangwatch_process::stat::read_stat(pid)
        {
            found.insert(top.clone(), (stat.info(), hold));
        }
    }
    Ok(found)
}

/// Why the contents of an entry are not all attributable, or their total size in bytes.
fn check_contents(entry: &TempEntry, since: SystemTime, uid: u32) -> Result<u64, String> {
    let born_since = |meta: &std::fs::Metadata, path: &Path| -> Result<(), String> {
        match meta.created() {
            Ok(born) if born + CLOCK_SLACK >= since => Ok(()),
            Ok(_) => Err(format!("{} predates the run", path.display())),
            Err(_) => Err(format!(
                "{} has no birth time to show it was made during the run",
                path.display()
            )),
        }
    };
    let top = std::fs::symlink_metadata(&entry.path).map_err(|err| err.to_string())?;
    born_since(&top, &entry.path)?;
    if !entry.is_dir {
        return Ok(top.size());
    }
    let device = top.dev();
    let mut size = 0u64;
    let mut count = 0usize;
    let mut stack = vec![entry.path.clone()];
    while let Some(dir) = stack.pop() {
        let listing = std::fs::read_dir(&dir).map_err(|err| format!("{}: {err}", dir.display()))?;
        for item in listing {
            let item = item.map_err(|err| format!("{}: {err}", dir.display()))?;
            count += 1;
            if count > CONTENTS_MAX {
                return Err(format!("it holds more than {CONTENTS_MAX} entries"));
            }
            let path = item.path();
            let meta = item
                .metadata()
                .map_err(|err| format!("{}: {err}", path.display()))?;
            if meta.uid() != uid {
                return Err(format!("{} belongs to user {}", path.display(), meta.uid()));
            }
            if meta.dev() != device {
                return Err(format!("{} is on another file system", path.display()));
            }
            born_since(&meta, &path)?;
            if meta.is_dir() {
                stack.push(path);
            } else {
                size = size.saturating_add(meta.size());
            }
        }
    }
    Ok(size)
}

/// One new entry that the tree was seen using, with the verdict on it.
#[derive(Debug)]
pub(crate) struct TempFinding {
    pub(crate) entry: TempEntry,
    pub(crate) object: LeakedObject,
}

/// Judges `entry`, which the tree was seen using (`seen`): `users` names a process that uses
/// it now, `unknown` says whether any might.
fn judge(
    baseline: &TempBaseline,
    entry: TempEntry,
    seen: &TempSeen,
    users: Option<&(ProcessInfo, Hold)>,
    unknown: bool,
    owners: &mut Owners,
) -> TempFinding {
    let sighting = seen
        .holders
        .iter()
        .find(|s| s.moment == Moment::Creation)
        .or(seen.holders.first());
    let seen_text = sighting.map_or_else(|| "seen used".to_owned(), describe_sighting);
    let since = baseline.taken_at.unwrap_or(SystemTime::UNIX_EPOCH);
    let contents = check_contents(&entry, since, baseline.uid);
    let (attribution, text) = if let Some((process, hold)) = users {
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
            format!("{seen_text}; whether another process uses it now is unknown"),
        )
    } else if let Err(why) = &contents {
        (
            Attribution::Suspected,
            format!("{seen_text}; not removable: {why}"),
        )
    } else {
        (Attribution::Attributable, seen_text)
    };
    let uid = entry.uid;
    let object = LeakedObject {
        kind: if entry.is_dir {
            LeakKind::TempDirectory
        } else {
            LeakKind::TempFile
        },
        name: entry.path.display().to_string(),
        size: contents.ok(),
        owner_uid: uid,
        owner: owners.name(uid),
        attribution,
        evidence: text,
        process: sighting.map(|s| s.process.clone()),
        action: LeakAction::Reported,
        error: None,
    };
    TempFinding { entry, object }
}

/// Judges `candidates` (entries with what was seen of them), all present and new.
fn judge_all(
    baseline: &TempBaseline,
    candidates: Vec<(TempEntry, TempSeen)>,
    owners: &mut Owners,
    errors: &mut Vec<String>,
) -> Vec<TempFinding> {
    if candidates.is_empty() {
        return Vec::new();
    }
    let tops: HashSet<PathBuf> = candidates.iter().map(|(e, _)| e.path.clone()).collect();
    let (users, unknown) = match users_now(&tops) {
        Ok(users) => (users, false),
        Err(err) => {
            errors.push(format!("look for other users of temporary entries: {err}"));
            (HashMap::new(), true)
        }
    };
    candidates
        .into_iter()
        .map(|(entry, seen)| {
            let user = users.get(&entry.path);
            judge(baseline, entry, &seen, user, unknown, owners)
        })
        .collect()
}

/// The whole tree's audit of the temporary directories, added to `report` (which the rest of
/// the audit made); cleans under [`LeakPolicy::Clean`]. `reported` is left out.
pub(crate) fn audit_into(
    baseline: &TempBaseline,
    evidence: &TempEvidence,
    reported: &HashSet<(PathBuf, u64)>,
    report: &mut LeakReport,
) {
    let mut errors = baseline.errors.clone();
    if let Some(why) = &evidence.unobserved {
        errors.push(format!(
            "watch the temporary directories for new entries: {why}; attribution relies on \
             the looks at stops"
        ));
    }
    let mut candidates = Vec::new();
    for dir in &baseline.dirs {
        let entries = match list(dir) {
            Ok(entries) => entries,
            Err(err) => {
                errors.push(format!("list {}: {err}", dir.display()));
                continue;
            }
        };
        for entry in entries {
            if baseline.had(&entry)
                || entry.uid != baseline.uid
                || reported.contains(&(entry.path.clone(), entry.inode))
            {
                continue;
            }
            match evidence.seen.get(&entry.path) {
                Some(seen) if seen.inode == entry.inode && !seen.holders.is_empty() => {
                    candidates.push((entry, seen.clone()));
                }
                _ => report.unattributed += 1,
            }
        }
    }
    let mut owners = Owners::default();
    let mut findings = judge_all(baseline, candidates, &mut owners, &mut errors);
    if report.policy == LeakPolicy::Clean {
        for finding in &mut findings {
            if finding.object.attribution == Attribution::Attributable {
                let (action, error) = remove(baseline, &finding.entry);
                finding.object.action = action;
                finding.object.error = error;
            }
        }
    }
    report.leaked |= findings
        .iter()
        .any(|f| f.object.attribution == Attribution::Attributable);
    // A socket or lock file inside a listed entry is part of it (the forkserver's listener in
    // its `pymp-*` directory): listed once, as the entry.
    report.objects.retain(|object| {
        !matches!(object.kind, LeakKind::UnixSocket | LeakKind::LockFile)
            || !findings
                .iter()
                .any(|f| Path::new(&object.name).starts_with(&f.entry.path))
    });
    report
        .objects
        .extend(findings.into_iter().map(|f| f.object));
    report
        .objects
        .sort_by(|a, b| (a.attribution, a.kind, &a.name).cmp(&(b.attribution, b.kind, &b.name)));
    report.errors.extend(errors);
}

/// Removes an attributable entry, after checking again that its path names the same inode and
/// that its contents still pass.
fn remove(baseline: &TempBaseline, entry: &TempEntry) -> (LeakAction, Option<String>) {
    match TempEntry::at(entry.path.clone()) {
        Ok(Some(now)) if now.inode == entry.inode && now.is_dir == entry.is_dir => {}
        Ok(_) => return (LeakAction::AlreadyGone, None),
        Err(err) => return (LeakAction::RemoveFailed, Some(err.to_string())),
    }
    let since = baseline.taken_at.unwrap_or(SystemTime::UNIX_EPOCH);
    if let Err(why) = check_contents(entry, since, baseline.uid) {
        return (
            LeakAction::RemoveFailed,
            Some(format!("not removed: {why}")),
        );
    }
    let removed = if entry.is_dir {
        std::fs::remove_dir_all(&entry.path)
    } else {
        std::fs::remove_file(&entry.path)
    };
    match removed {
        Ok(()) => (LeakAction::Removed, None),
        Err(err) if err.kind() == io::ErrorKind::NotFound => (LeakAction::AlreadyGone, None),
        Err(err) => (LeakAction::RemoveFailed, Some(err.to_string())),
    }
}

/// The temporary entries of one part of the tree (see [`mod@crate::part`]): those that only
/// the part's processes were seen using.
#[derive(Debug)]
pub struct PartTemp {
    baseline: Arc<TempBaseline>,
    candidates: Vec<(PathBuf, TempSeen)>,
}

/// Whether `path` is inside one of the entries `found`, which then covers it in a report.
pub(crate) fn covers(found: &[PartTempFound], path: &Path) -> bool {
    found
        .iter()
        .any(|((top, _), _)| path != top.as_path() && path.starts_with(top))
}

/// An entry a part's audit found: its path and inode, and the report on it.
pub(crate) type PartTempFound = ((PathBuf, u64), LeakedObject);

/// Picks the part's candidates; `None` when there are none.
pub(crate) fn pick(
    baseline: &Arc<TempBaseline>,
    evidence: &TempEvidence,
    reported: &HashSet<(PathBuf, u64)>,
    part: &crate::Part,
) -> Option<PartTemp> {
    let candidates: Vec<(PathBuf, TempSeen)> = evidence
        .seen
        .iter()
        .filter(|(path, seen)| {
            !seen.holders.is_empty()
                && seen.holders.iter().all(|s| part.has(&s.process))
                && !reported.contains(&((*path).clone(), seen.inode))
        })
        .map(|(path, seen)| (path.clone(), seen.clone()))
        .collect();
    (!candidates.is_empty()).then(|| PartTemp {
        baseline: Arc::clone(baseline),
        candidates,
    })
}

impl PartTemp {
    /// Judges the candidates (blocking): those that nobody uses now and whose contents are
    /// attributable are the part's leak. One still used, or not removable, is left to the
    /// whole tree's audit. Returns the found entries, by path and inode, and the gone ones.
    pub(crate) fn run(
        self,
        owners: &mut Owners,
        errors: &mut Vec<String>,
    ) -> (Vec<PartTempFound>, Vec<PathBuf>) {
        let mut present = Vec::new();
        let mut gone = Vec::new();
        for (path, seen) in self.candidates {
            match TempEntry::at(path.clone()) {
                Ok(Some(entry))
                    if entry.inode == seen.inode
                        && entry.uid == self.baseline.uid
                        && !self.baseline.had(&entry) =>
                {
                    present.push((entry, seen));
                }
                Ok(_) => gone.push(path),
                Err(err) => errors.push(format!("look at {}: {err}", path.display())),
            }
        }
        let found = judge_all(&self.baseline, present, owners, errors)
            .into_iter()
            .filter(|f| f.object.attribution == Attribution::Attributable)
            .map(|f| ((f.entry.path, f.entry.inode), f.object))
            .collect();
        (found, gone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("hangwatch-temp-unit-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).expect("create scratch");
        dir
    }

    #[test]
    fn each_directory_is_watched_once() {
        let dir = scratch("distinct");
        let dirs = distinct_dirs([
            dir.clone(),
            dir.join("."),
            dir.join("missing"),
            PathBuf::from("/"),
        ]);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(dirs, vec![dir, PathBuf::from("/")]);
    }

    #[test]
    fn contents_made_during_the_run_pass_and_older_ones_do_not() {
        let dir = scratch("contents");
        let old = dir.join("old");
        std::fs::write(&old, b"12").expect("write");
        std::thread::sleep(Duration::from_millis(200));
        let since = SystemTime::now();
        let top = dir.join("top");
        std::fs::create_dir_all(top.join("sub")).expect("mkdir");
        std::fs::write(top.join("sub/data"), b"12345").expect("write");
        let uid = nix::unistd::geteuid().as_raw();
        let entry = TempEntry::at(top.clone()).expect("stat").expect("entry");
        let fresh = check_contents(&entry, since, uid);
        // A file made before the run, moved in, keeps its birth time.
        std::fs::rename(&old, top.join("sub/old")).expect("rename");
        let moved = check_contents(&entry, since, uid);
        let other_user = check_contents(&entry, since, uid.wrapping_add(1));
        let _ = std::fs::remove_dir_all(&dir);
        if fresh.is_err() && fresh.as_ref().is_err_and(|e| e.contains("no birth time")) {
            // A file system without birth times: nothing is ever attributable there.
            return;
        }
        assert_eq!(fresh, Ok(5));
        assert!(
            moved.as_ref().is_err_and(|e| e.contains("predates")),
            "{moved:?}"
        );
        assert!(
            other_user
                .as_ref()
                .is_err_and(|e| e.contains("belongs to user")),
            "{other_user:?}"
        );
    }

    #[test]
    fn uses_inside_a_followed_entry_are_its() {
        let mut evidence = TempEvidence {
            dirs: vec![PathBuf::from("/tmp")],
            ..TempEvidence::default()
        };
        let entry = TempEntry {
            path: PathBuf::from("/tmp/pymp-abc"),
            inode: 5,
            uid: 0,
            is_dir: true,
        };
        evidence.created(&entry);
        let mut info = |pid: i32| {
            Some(ProcessInfo {
                pid,
                start_time: 1,
                ppid: 1,
                pgid: pid,
                command: "python3".to_owned(),
            })
        };
        evidence.saw(
            &[
                (7, PathBuf::from("/tmp/pymp-abc/listener-x"), Hold::Serving),
                (8, PathBuf::from("/tmp/pymp-abcd/x"), Hold::Open),
                (9, PathBuf::from("/tmp"), Hold::WorkingDirectory),
                (10, PathBuf::from("/tmp/pymp-abc"), Hold::WorkingDirectory),
            ],
            Moment::Stop,
            &mut info,
        );
        let holders: Vec<i32> = evidence.seen[&entry.path]
            .holders
            .iter()
            .map(|s| s.process.pid)
            .collect();
        assert_eq!(holders, vec![7, 10]);
    }
}
