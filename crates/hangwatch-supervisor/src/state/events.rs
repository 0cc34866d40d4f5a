//! The event log, `events.jsonl`: what the supervisor did and saw, one JSON record per line.
//!
//! Each record is written with one `write(2)` on a file opened `O_APPEND`, so it is visible to
//! `tail -f` and `hangwatch events -f` at once and a reader never sees two records interleaved.
//! A reader must still treat a last line without its `\n` as not yet written.
//!
//! Durability without blocking: after each append, a background thread is asked to
//! `fdatasync` the file. Requests that arrive while a sync runs are served by one more sync, so
//! a burst of events costs two syncs, not one per event, and the event loop never waits for the
//! disk. [`EventLog::close`] syncs what is left and waits for it.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::SystemTime;

use hangwatch_protocol::event::{Event, EventRecord};

/// A record of `event`, stamped with the current time.
#[must_use]
pub fn record(service: Option<&str>, event: Event) -> EventRecord {
    EventRecord {
        at: super::timestamp(SystemTime::now()),
        service: service.map(str::to_owned),
        event,
    }
}

/// The open event log.
#[derive(Debug)]
pub struct EventLog {
    path: PathBuf,
    file: File,
    sync: Arc<Durability>,
    syncer: Option<JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct Durability {
    state: Mutex<SyncState>,
    wake: Condvar,
}

#[derive(Debug, Default)]
struct SyncState {
    /// Appends so far.
    appended: u64,
    /// Appends known to be on disk.
    synced: u64,
    /// How many times the file was synced (for tests of the coalescing).
    syncs: u64,
    /// The last sync failure not yet reported.
    error: Option<io::Error>,
    closing: bool,
}

impl EventLog {
    /// Opens (or creates) the event log at `path` for appending.
    pub fn open(path: &Path) -> io::Result<EventLog> {
        let existed = path.exists();
        let file = OpenOptions::new().append(true).create(true).open(path)?;
        let sync = Arc::new(Durability::default());
        let for_thread = Arc::clone(&sync);
        let syncing = file.try_clone()?;
        // A new file's directory entry must reach the disk too, once.
        let dir = (!existed).then(|| path.parent().unwrap_or(Path::new(".")).to_owned());
        let syncer = std::thread::Builder::new()
            .name("hangwatch-events".into())
            .spawn(move || sync_loop(&for_thread, &syncing, dir.as_deref()))?;
        Ok(EventLog {
            path: path.to_owned(),
            file,
            sync,
            syncer: Some(syncer),
        })
    }

    /// The file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `record` as one line and asks for it to be synced in the background.
    ///
    /// Fails if the line could not be written (a full disk), or reports a failure of an
    /// earlier background sync.
    pub fn append(&self, record: &EventRecord) -> io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(io::Error::other)?;
        line.push(b'\n');
        // One write(2) in O_APPEND mode: the line lands whole at the end. A regular file takes
        // a short write only when the disk is full, and then the part is cut off again.
        super::logfile::write_whole(&self.file, &line)?;
        let mut state = lock(&self.sync.state);
        state.appended += 1;
        let error = state.error.take();
        drop(state);
        self.sync.wake.notify_one();
        error.map_or(Ok(()), Err)
    }

    /// Syncs what was appended and stops the background thread. Blocks until the disk has it.
    pub fn close(mut self) -> io::Result<()> {
        self.stop();
        match self.syncer.take().map(JoinHandle::join) {
            Some(Err(_panicked)) => Err(io::Error::other("the event log's sync thread panicked")),
            _ => lock(&self.sync.state).error.take().map_or(Ok(()), Err),
        }
    }

    #[cfg(test)]
    fn syncs(&self) -> (u64, u64) {
        let state = lock(&self.sync.state);
        (state.syncs, state.synced)
    }

    fn stop(&self) {
        lock(&self.sync.state).closing = true;
        self.sync.wake.notify_one();
    }
}

impl Drop for EventLog {
    /// Without [`EventLog::close`], the thread still syncs what is left, but nobody waits.
    fn drop(&mut self) {
        self.stop();
    }
}

fn sync_loop(sync: &Durability, file: &File, dir: Option<&Path>) {
    if let Some(dir) = dir {
        if let Err(err) = File::open(dir).and_then(|dir| dir.sync_all()) {
            lock(&sync.state).error = Some(err);
        }
    }
    let mut state = lock(&sync.state);
    loop {
        if state.appended > state.synced {
            let target = state.appended;
            drop(state);
            let result = file.sync_data();
            state = lock(&sync.state);
            state.syncs += 1;
            match result {
                Ok(()) => state.synced = target,
                Err(err) => {
                    tracing::warn!(error = %err, "failed to sync the event log");
                    // Counted as synced so that a broken disk is not retried in a tight loop;
                    // the next append tries again.
                    state.synced = target;
                    state.error = Some(err);
                }
            }
            continue;
        }
        if state.closing {
            return;
        }
        state = sync
            .wake
            .wait(state)
            .unwrap_or_else(PoisonError::into_inner);
    }
}

fn lock(state: &Mutex<SyncState>) -> MutexGuard<'_, SyncState> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::time::{Duration, Instant};

    use hangwatch_protocol::event::EVENT_VERSION;

    use super::*;

    fn started(pid: i32) -> Event {
        Event::Started { pid, restarts: 0 }
    }

    #[test]
    fn records_parse_back() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let path = tmp.path().join("events.jsonl");
        let log = EventLog::open(&path).expect("open");
        let up = record(
            None,
            Event::Up {
                version: EVENT_VERSION,
                pid: 1,
                config: "hangwatch.toml".into(),
                services: 2,
            },
        );
        let web = record(Some("web"), started(42));
        log.append(&up).expect("append");
        log.append(&web).expect("append");
        log.close().expect("close");
        let text = std::fs::read_to_string(&path).expect("read");
        let back: Vec<EventRecord> = text
            .lines()
            .map(|line| serde_json::from_str(line).expect("parse"))
            .collect();
        assert_eq!(back, [up, web]);
        assert!(text.ends_with('\n'));
        // The stamp is RFC 3339 UTC with milliseconds.
        let at = &back[0].at;
        assert!(
            at.len() == 24 && at.ends_with('Z') && at.as_bytes()[19] == b'.',
            "{at}"
        );
    }

    #[test]
    fn a_full_disk_is_an_error_of_append() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let path = tmp.path().join("events.jsonl");
        std::os::unix::fs::symlink("/dev/full", &path).expect("symlink");
        let log = EventLog::open(&path).expect("open");
        let err = log.append(&record(None, started(1))).expect_err("no space");
        assert_eq!(err.raw_os_error(), Some(nix::errno::Errno::ENOSPC as i32));
        drop(log);
    }

    #[test]
    fn reopening_appends() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let path = tmp.path().join("events.jsonl");
        for pid in [1, 2] {
            let log = EventLog::open(&path).expect("open");
            log.append(&record(Some("a"), started(pid)))
                .expect("append");
            log.close().expect("close");
        }
        assert_eq!(
            std::fs::read_to_string(&path)
                .expect("read")
                .lines()
                .count(),
            2
        );
    }

    #[test]
    fn syncs_are_coalesced_and_close_waits_for_the_last() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let log = EventLog::open(&tmp.path().join("events.jsonl")).expect("open");
        let burst = 2000;
        let started_at = Instant::now();
        for pid in 0..burst {
            log.append(&record(Some("svc"), started(pid)))
                .expect("append");
        }
        let took = started_at.elapsed();
        let (syncs, _) = log.syncs();
        println!("{burst} appends in {took:?}, {syncs} syncs so far");
        assert!(syncs < u64::from(burst.unsigned_abs()) / 2, "{syncs} syncs");
        let sync = Arc::clone(&log.sync);
        log.close().expect("close");
        let state = lock(&sync.state);
        assert_eq!(state.synced, u64::from(burst.unsigned_abs()));
    }

    #[test]
    fn a_reader_sees_only_whole_lines() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let path = tmp.path().join("events.jsonl");
        let log = EventLog::open(&path).expect("open");
        let total = 3000;
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let path = path.clone();
            let done = Arc::clone(&done);
            // Follows the file like `tail -f`, parsing each line as soon as its `\n` is there.
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(30);
                let mut file = File::open(&path).expect("open for reading");
                let mut pending = Vec::new();
                let mut seen = 0;
                let mut buf = [0u8; 4096];
                loop {
                    assert!(Instant::now() < deadline, "reader timed out at {seen}");
                    let n = file.read(&mut buf).expect("read");
                    if n == 0 {
                        if done.load(std::sync::atomic::Ordering::Acquire) && seen == total {
                            return seen;
                        }
                        std::thread::yield_now();
                        continue;
                    }
                    pending.extend_from_slice(&buf[..n]);
                    while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                        let line: Vec<u8> = pending.drain(..=end).collect();
                        let record: EventRecord =
                            serde_json::from_slice(&line).expect("a whole record");
                        assert_eq!(record.service.as_deref(), Some("svc"));
                        seen += 1;
                    }
                }
            })
        };
        for pid in 0..total {
            // Vary the length so that lines straddle the reader's buffer.
            let event = if pid % 7 == 0 {
                Event::StartFailed {
                    error: "x".repeat(pid as usize % 5000),
                }
            } else {
                started(pid)
            };
            log.append(&record(Some("svc"), event)).expect("append");
        }
        done.store(true, std::sync::atomic::Ordering::Release);
        assert_eq!(reader.join().expect("reader"), total);
        log.close().expect("close");
    }
}
