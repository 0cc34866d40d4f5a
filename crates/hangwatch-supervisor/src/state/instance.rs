//! The instance record, `instance.json`: enough to find, after hangwatch itself was killed,
//! every process it had started, and nothing else.
//!
//! # Theory of operation
//!
//! Each `hangwatch up` draws a random token and gives it to every service in the environment
//! variable [`INSTANCE_ENV`]; descendants inherit it, including those that escaped with
//! `setsid` or a double fork. The record holds the token, hangwatch's own identity (PID and
//! start time) and each service's process group with its leader's start time.
//!
//! The next `hangwatch up` of the same state directory (it holds the directory's lock, so the
//! previous one is gone) reads the old record and looks for survivors
//! ([`find_survivors`]): every live process whose *starting* environment holds the old token
//! exactly, or that belongs to a recorded process group whose leader still has its recorded
//! start time (which catches a service that cleared its environment for its children). Those
//! are killed through pidfds opened after checking their start time ([`kill_survivors`]), so a
//! PID reused since the scan is never hit.
//!
//! The record is rewritten as services start and restart. Writing it atomically means an
//! `fsync`, which can take long on a busy disk; [`InstanceFile`] does the first write before any
//! service starts (so the token is always on disk before a process carries it) and every later
//! one on a background thread.
//!
//! # Caveats
//!
//! - A process of a recorded group whose leader has exited, and which cleared the token from
//!   its environment, is not found: without its leader the group's identity cannot be checked.
//! - A survivor that forks between the scan and the kill leaves a child; scanning again after
//!   the kill finds it.

use std::collections::HashSet;
use std::io::{self, Read};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use hangwatch_diagnose::incident::write_atomically;
use hangwatch_process::environ::environ_contains;
use hangwatch_process::exit_watch::ExitWatch;
use hangwatch_process::pidfd::PidFd;
use hangwatch_process::stat::read_stat;
use hangwatch_process::tree::ProcessTable;
use hangwatch_process::{ProcessId, Signal};
use hangwatch_protocol::report::ProcessInfo;
use serde::{Deserialize, Serialize};

/// The environment variable that carries the instance token to every service and its
/// descendants.
pub const INSTANCE_ENV: &str = "HANGWATCH_INSTANCE";

/// Who runs the services of a state directory, and where they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// hangwatch's PID.
    pub pid: i32,
    /// hangwatch's start time (field 22 of `/proc/PID/stat`).
    pub start_time: u64,
    /// The value of [`INSTANCE_ENV`] given to every service.
    pub token: String,
    /// The services' process groups.
    #[serde(default)]
    pub groups: Vec<GroupRecord>,
}

/// One service's process group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    /// The service.
    pub service: String,
    /// The group's ID: its leader's PID, the service's main process.
    pub pgid: i32,
    /// The leader's start time.
    pub leader_start_time: u64,
}

impl InstanceRecord {
    /// A record for this process, with a fresh random token and no groups yet.
    pub fn for_this_process() -> io::Result<InstanceRecord> {
        let pid = std::process::id() as i32;
        let me = read_stat(pid)?.ok_or_else(|| io::Error::other("own /proc entry is missing"))?;
        Ok(InstanceRecord {
            pid,
            start_time: me.start_time,
            token: new_token()?,
            groups: Vec::new(),
        })
    }

    /// Reads the record at `path`; `Ok(None)` when there is none.
    ///
    /// An unreadable record is an error of kind `InvalidData`. (After a crash of the machine
    /// there are no survivors, so the caller may treat it as none, saying so.)
    pub fn read(path: &Path) -> io::Result<Option<InstanceRecord>> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))
    }

    /// The `NAME=value` entry that services get in their environment.
    #[must_use]
    pub fn env_entry(&self) -> String {
        format!("{INSTANCE_ENV}={}", self.token)
    }

    /// Whether the hangwatch that wrote this record is still running (same PID, same start
    /// time).
    pub fn is_running(&self) -> io::Result<bool> {
        ProcessId {
            pid: self.pid,
            start_time: self.start_time,
        }
        .is_alive()
    }

    /// Records `leader` as `service`'s process group, replacing the service's previous one.
    pub fn set_group(&mut self, service: &str, leader: ProcessId) {
        self.groups.retain(|group| group.service != service);
        self.groups.push(GroupRecord {
            service: service.to_owned(),
            pgid: leader.pid,
            leader_start_time: leader.start_time,
        });
    }

    /// Forgets `service`'s process group (it ended).
    pub fn remove_group(&mut self, service: &str) {
        self.groups.retain(|group| group.service != service);
    }

    fn to_json(&self) -> Vec<u8> {
        let mut json = serde_json::to_vec_pretty(self).unwrap_or_default();
        json.push(b'\n');
        json
    }
}

/// 128 random bits, in hex.
fn new_token() -> io::Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Every live process that a previous hangwatch (described by `previous`) left behind.
///
/// Never includes `own_pid` or its ancestors, nor the previous hangwatch itself if it still
/// runs, nor zombies (they are dead already). Scans all of `/proc` ([`ProcessTable::scan`]).
pub fn find_survivors(previous: &InstanceRecord, own_pid: i32) -> io::Result<Vec<ProcessId>> {
    let needle = previous.env_entry().into_bytes();
    let previous_running = previous.is_running()?;
    // Groups whose leader still has the recorded start time: a PID is not reused while it
    // names a live process, so such a group is the one that was recorded.
    let mut groups = HashSet::new();
    for group in &previous.groups {
        if read_stat(group.pgid)?.is_some_and(|leader| leader.start_time == group.leader_start_time)
        {
            groups.insert(group.pgid);
        }
    }
    let table = ProcessTable::scan()?;
    let ancestors = ancestors(&table, own_pid);
    let mut found = Vec::new();
    for stat in table.processes() {
        if stat.is_zombie()
            || stat.pid == own_pid
            || ancestors.contains(&stat.pid)
            || (previous_running && stat.pid == previous.pid)
        {
            continue;
        }
        let token_ok = !previous.token.is_empty();
        if groups.contains(&stat.pgrp) || (token_ok && environ_contains(stat.pid, &needle)?) {
            found.push(ProcessId::from(stat));
        }
    }
    Ok(found)
}

/// Kills each of `ids` with SIGKILL through a pidfd (so a process whose PID was reused is left
/// alone) and returns the processes killed, as seen just before. Errors are logged, not
/// returned: one process that cannot be killed must not spare the others.
#[must_use]
pub fn kill_survivors(ids: &[ProcessId]) -> Vec<ProcessInfo> {
    let mut killed = Vec::new();
    for &id in ids {
        let pidfd = match PidFd::open(id) {
            Ok(Some(pidfd)) => pidfd,
            Ok(None) => continue,
            Err(err) => {
                tracing::warn!(pid = id.pid, error = %err, "failed to open a survivor's pidfd");
                continue;
            }
        };
        // Read before the kill: afterwards the command line is gone.
        let info = read_stat(id.pid)
            .ok()
            .flatten()
            .filter(|stat| stat.start_time == id.start_time)
            .map(|stat| stat.info());
        match pidfd.send(Signal::KILL) {
            Ok(true) => killed.extend(info),
            Ok(false) => {}
            Err(err) => {
                tracing::warn!(pid = id.pid, error = %err, "failed to kill a survivor");
            }
        }
    }
    killed
}

/// Waits, at most `limit`, for `ids` to exit (after [`kill_survivors`], before starting
/// services that would collide with them, on a port say). Returns those still running. Must be
/// called inside a tokio runtime.
pub async fn wait_gone(ids: &[ProcessId], limit: Duration) -> io::Result<Vec<ProcessId>> {
    let watch = ExitWatch::new()?;
    let mut waiting = Vec::new();
    for &id in ids {
        if let Some(pidfd) = PidFd::open(id)? {
            watch.add(&pidfd)?;
            waiting.push(pidfd);
        }
    }
    let wait = async {
        while !waiting.is_empty() {
            let exited = watch.exited().await?;
            waiting.retain(|pidfd| {
                let gone = exited.contains(&pidfd.id().pid);
                if gone {
                    watch.remove(pidfd);
                }
                !gone
            });
        }
        io::Result::Ok(())
    };
    match tokio::time::timeout(limit, wait).await {
        Ok(result) => result?,
        Err(_elapsed) => {}
    }
    Ok(waiting.iter().map(PidFd::id).collect())
}

/// The parent, grandparent, ... of `pid`: hangwatch may have been started from a shell that a
/// previous instance ran, and must not kill its own parents.
fn ancestors(table: &ProcessTable, pid: i32) -> HashSet<i32> {
    let mut found = HashSet::new();
    let mut current = pid;
    while let Some(stat) = table.get(current) {
        if stat.ppid <= 0 || !found.insert(stat.ppid) {
            break;
        }
        current = stat.ppid;
    }
    found
}

/// `instance.json`, kept up to date without blocking the caller on the disk.
#[derive(Debug)]
pub struct InstanceFile {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<WriterState>,
    wake: Condvar,
}

#[derive(Debug, Default)]
struct WriterState {
    /// The newest record not yet written; an older pending one is simply replaced.
    next: Option<Vec<u8>>,
    /// The last failure not yet reported.
    error: Option<io::Error>,
    closing: bool,
}

impl InstanceFile {
    /// Writes `record` to `path` now, durably, and starts the background writer for later
    /// updates. Blocks on the disk: call it before the services start.
    pub fn create(path: &Path, record: &InstanceRecord) -> io::Result<InstanceFile> {
        write_atomically(path, &record.to_json())?;
        let shared = Arc::new(Shared::default());
        let for_thread = Arc::clone(&shared);
        let path = path.to_owned();
        let writer = std::thread::Builder::new()
            .name("hangwatch-instance".into())
            .spawn(move || write_loop(&for_thread, &path))?;
        Ok(InstanceFile {
            shared,
            writer: Some(writer),
        })
    }

    /// Replaces the record on disk with `record`, in the background. Returns the failure of an
    /// earlier background write, if one happened since the last call.
    pub fn update(&self, record: &InstanceRecord) -> io::Result<()> {
        let json = record.to_json();
        let mut state = lock(&self.shared.state);
        state.next = Some(json);
        let error = state.error.take();
        drop(state);
        self.shared.wake.notify_one();
        error.map_or(Ok(()), Err)
    }

    /// Writes the pending update, if any, and stops the writer. Blocks on the disk.
    pub fn close(mut self) -> io::Result<()> {
        self.stop();
        match self.writer.take().map(JoinHandle::join) {
            Some(Err(_panicked)) => Err(io::Error::other("the instance writer panicked")),
            _ => lock(&self.shared.state).error.take().map_or(Ok(()), Err),
        }
    }

    fn stop(&self) {
        lock(&self.shared.state).closing = true;
        self.shared.wake.notify_one();
    }
}

impl Drop for InstanceFile {
    fn drop(&mut self) {
        self.stop();
    }
}

fn write_loop(shared: &Shared, path: &Path) {
    let mut state = lock(&shared.state);
    loop {
        if let Some(json) = state.next.take() {
            drop(state);
            let result = write_atomically(path, &json);
            state = lock(&shared.state);
            if let Err(err) = result {
                tracing::warn!(path = %path.display(), error = %err, "failed to write the instance record");
                state.error = Some(err);
            }
            continue;
        }
        if state.closing {
            return;
        }
        state = shared
            .wake
            .wait(state)
            .unwrap_or_else(PoisonError::into_inner);
    }
}

fn lock(state: &Mutex<WriterState>) -> MutexGuard<'_, WriterState> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    fn record(token: &str) -> InstanceRecord {
        InstanceRecord {
            pid: 1,
            start_time: 1,
            token: token.into(),
            groups: Vec::new(),
        }
    }

    #[test]
    fn records_round_trip_through_the_file() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let path = tmp.path().join("instance.json");
        assert_eq!(InstanceRecord::read(&path).expect("read"), None);
        let mut record = InstanceRecord::for_this_process().expect("record");
        assert_eq!(record.token.len(), 32);
        assert_ne!(
            record.token,
            InstanceRecord::for_this_process().expect("2").token
        );
        assert!(record.is_running().expect("check"));
        let file = InstanceFile::create(&path, &record).expect("create");
        assert_eq!(
            InstanceRecord::read(&path).expect("read"),
            Some(record.clone())
        );
        let leader = ProcessId {
            pid: 77,
            start_time: 5,
        };
        record.set_group("web", leader);
        record.set_group("db", leader);
        record.set_group("web", ProcessId { pid: 78, ..leader });
        record.remove_group("db");
        file.update(&record).expect("update");
        file.close().expect("close");
        let back = InstanceRecord::read(&path).expect("read").expect("present");
        assert_eq!(back, record);
        assert_eq!(
            back.groups,
            [GroupRecord {
                service: "web".into(),
                pgid: 78,
                leader_start_time: 5
            }]
        );
        let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(leftovers, ["instance.json"], "no temporary file left");
    }

    #[test]
    fn an_unreadable_record_is_invalid_data() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let path = tmp.path().join("instance.json");
        std::fs::write(&path, "").expect("write");
        let err = InstanceRecord::read(&path).expect_err("empty file");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    /// Kills, on drop, every recorded process that still runs; the test's processes never
    /// outlive it, whatever assertion fails.
    #[derive(Default)]
    struct Cleanup(Vec<ProcessId>);

    impl Cleanup {
        fn add(&mut self, pid: i32) -> ProcessId {
            let id = ProcessId::of(pid)
                .expect("read")
                .expect("process is running");
            self.0.push(id);
            id
        }
    }

    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = kill_survivors(&self.0);
        }
    }

    /// Runs `script` under `sh` with `token` (or no token) in the environment and returns the
    /// PIDs it prints, one per line. The script's background processes must not keep stdout.
    fn spawn(script: &str, token: Option<&str>) -> Vec<i32> {
        let mut command = Command::new("sh");
        command.args(["-c", script]).env_remove(INSTANCE_ENV);
        if let Some(token) = token {
            command.env(INSTANCE_ENV, token);
        }
        let output = command.output().expect("run sh");
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout)
            .expect("utf-8")
            .lines()
            .map(|line| line.trim().parse().expect("a PID"))
            .collect()
    }

    /// A `setsid sleep` in a session of its own, orphaned at once (its shell exits).
    const ESCAPEE: &str = "setsid sleep 60 >/dev/null 2>&1 & echo $!";
    /// A new session whose leader (`sleep`) has one more `sleep` in its group; both PIDs.
    const GROUP: &str = "setsid sh -c 'sleep 60 >/dev/null 2>&1 & echo $!; echo $$; \
                         exec sleep 60 >/dev/null 2>&1' &";

    #[tokio::test]
    async fn survivors_are_found_by_token_and_group_and_killed() {
        let mut cleanup = Cleanup::default();
        let ours = new_token().expect("token");
        let theirs = new_token().expect("token");

        let escapee = cleanup.add(spawn(ESCAPEE, Some(&ours))[0]);
        let previous_hangwatch = cleanup.add(spawn(ESCAPEE, Some(&ours))[0]);
        // A group without the token: found through the recorded group alone.
        let pids = spawn(GROUP, None);
        let (member, leader) = (cleanup.add(pids[0]), cleanup.add(pids[1]));
        // Another instance's processes, and a recorded group whose leader's start time does
        // not match (its PID was reused, as far as the record can tell).
        let stranger = cleanup.add(spawn(ESCAPEE, Some(&theirs))[0]);
        let pids = spawn(GROUP, None);
        let (other_member, other_leader) = (cleanup.add(pids[0]), cleanup.add(pids[1]));

        let mut previous = InstanceRecord {
            // A previous hangwatch still running is never a survivor (the state directory's
            // lock would have stopped this one anyway).
            pid: previous_hangwatch.pid,
            start_time: previous_hangwatch.start_time,
            token: ours.clone(),
            groups: Vec::new(),
        };
        previous.set_group("grouped", leader);
        previous.set_group(
            "reused",
            ProcessId {
                start_time: other_leader.start_time + 1,
                ..other_leader
            },
        );

        let own = std::process::id() as i32;
        let mut found = find_survivors(&previous, own).expect("scan");
        found.sort();
        let mut want = vec![escapee, member, leader];
        want.sort();
        assert_eq!(found, want);

        let killed = kill_survivors(&found);
        let mut killed_pids: Vec<_> = killed.iter().map(|info| info.pid).collect();
        killed_pids.sort_unstable();
        let mut want_pids: Vec<_> = want.iter().map(|id| id.pid).collect();
        want_pids.sort_unstable();
        assert_eq!(killed_pids, want_pids);
        assert!(killed.iter().all(|info| info.command.starts_with("sleep")));

        let left = wait_gone(&found, Duration::from_secs(5))
            .await
            .expect("wait");
        assert!(left.is_empty(), "still running: {left:?}");
        for id in &want {
            assert!(!id.is_alive().expect("check"), "{id} survived");
        }
        for id in [previous_hangwatch, stranger, other_member, other_leader] {
            assert!(id.is_alive().expect("check"), "{id} was killed");
        }
        // Nothing is found twice.
        assert!(find_survivors(&previous, own).expect("scan").is_empty());

        // The cleanup kills the rest; check that it did.
        let rest = [previous_hangwatch, stranger, other_member, other_leader];
        drop(cleanup);
        let left = wait_gone(&rest, Duration::from_secs(5))
            .await
            .expect("wait");
        assert!(left.is_empty(), "cleanup left {left:?}");
    }

    #[test]
    fn own_process_and_ancestors_are_never_survivors() {
        let table = ProcessTable::scan().expect("scan");
        let own = std::process::id() as i32;
        let mine = ancestors(&table, own);
        let parent = table.get(own).expect("own entry").ppid;
        assert!(mine.contains(&parent));
        assert!(!mine.contains(&own));
        // With our own group recorded (its leader checked), only strangers in it could match,
        // and there are none: the test process and its parents are excluded.
        let me = ProcessId::of(own).expect("read").expect("running");
        let mut previous = record("");
        if let Some(stat) = table.get(own) {
            if let Some(leader) = ProcessId::of(stat.pgrp).expect("read") {
                previous.set_group("self", leader);
            }
        }
        let found = find_survivors(&previous, own).expect("scan");
        assert!(!found.contains(&me));
        assert!(found.iter().all(|id| !mine.contains(&id.pid)));
    }
}
